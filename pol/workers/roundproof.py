"""``pol-round-v1``: a worker's signed claim about one round, with its end weights.

A round proof is a frame (:mod:`pol.workers.messages`) whose header is
``{"format": "pol-round-v1", "body": BODY, "signature": hex}`` and whose tensors are the end
weights (named as in ``state_dict()``). BODY::

    run                   hex plan digest
    round, worker         integers
    start_weights_digest  hex weights_digest of the global model the round started from
    first_step, steps     worker steps first_step .. first_step + steps - 1
    indices               the data set indices of every local step (steps lists of batch_size)
    end_state_digest      hex state_digest of the end state (weights + optimizer state, no RNG)
    end_weights_digest    hex weights_digest of the end weights (= of the frame's tensors)

The signature is Ed25519 by the worker's registered key over ``"pol-round-v1" || canonical_json(BODY)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from nacl.signing import SigningKey

from pol.hashing import canonical_json
from pol.keys import sign
from pol.workers.messages import WorkersFormatError, decode_frame, encode_frame, field, hex_digest

ROUND_FORMAT = "pol-round-v1"
ROUND_DOMAIN = b"pol-round-v1"


@dataclass(frozen=True)
class RoundProof:
    body: dict[str, Any]
    signature: bytes
    tensors: dict[str, np.ndarray]

    @property
    def round(self) -> int:
        return int(self.body["round"])

    @property
    def worker(self) -> int:
        return int(self.body["worker"])

    def digest_field(self, name: str) -> bytes:
        return bytes.fromhex(self.body[name])

    @property
    def indices(self) -> np.ndarray:
        return np.asarray(self.body["indices"], dtype=np.int64)

    def signed_message(self) -> bytes:
        return canonical_json(self.body)


def make_body(*, run: bytes, round_index: int, worker: int, start_weights_digest: bytes, first_step: int,
              indices: np.ndarray, end_state_digest: bytes, end_weights_digest: bytes) -> dict[str, Any]:
    return {"run": run.hex(), "round": int(round_index), "worker": int(worker),
            "start_weights_digest": start_weights_digest.hex(), "first_step": int(first_step),
            "steps": int(len(indices)), "indices": np.asarray(indices, dtype=np.int64).tolist(),
            "end_state_digest": end_state_digest.hex(), "end_weights_digest": end_weights_digest.hex()}


def encode_round_proof(body: Mapping[str, Any], tensors: Mapping[str, np.ndarray], key: SigningKey) -> bytes:
    signature = sign(key, ROUND_DOMAIN, canonical_json(dict(body)))
    return encode_frame({"format": ROUND_FORMAT, "body": dict(body), "signature": signature.hex()}, tensors)


def decode_round_proof(raw: bytes) -> RoundProof:
    """Parse a round proof; :class:`WorkersFormatError` names the first defect."""
    header, tensors = decode_frame(raw)
    if header.get("format") != ROUND_FORMAT:
        raise WorkersFormatError(f"not a {ROUND_FORMAT} round proof (format {header.get('format')!r:.40})")
    body = field(header, "body", dict, "round proof")
    signature = hex_digest(header, "signature", "round proof", size=64)
    for name in ("round", "worker", "first_step", "steps"):
        if field(body, name, int, "round proof") < 0:
            raise WorkersFormatError(f"round proof field {name!r} is negative")
    for name in ("run", "start_weights_digest", "end_state_digest", "end_weights_digest"):
        hex_digest(body, name, "round proof")
    indices = field(body, "indices", list, "round proof")
    if not all(isinstance(row, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in row)
               for row in indices):
        raise WorkersFormatError("round proof indices must be lists of integers")
    return RoundProof(body, signature, tensors)
