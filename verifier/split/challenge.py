"""Challenges for compact node proofs (interactive), as for single-process compact proofs.

A compact node proof stores whole checkpoints only at anchors (plus 0 and the last); the chain
commits every state digest and the transcript is complete. To check segment j the verifier
needs checkpoint j:

* the verifier draws segments with its own randomness and writes a challenge for one node
  (``pol split challenge RUN --node R``): ``{"schema": "pol-split-challenge-v1", "plan_digest",
  "rank", "chain_head", "segments", "nonce", "issued_at"}``;
* the node regenerates the start checkpoints by exact replay from its anchors with its own
  recorded inputs (``pol split respond``) and returns them in an HDF5 response (attrs
  ``format = "pol-split-response"``, ``format_version = 1``, ``challenge`` = the challenge's
  canonical JSON; ``/states/NNNNNN/{index,deltas,plain}``, each state coded by ``pol.codec``
  without a base);
* the verifier (``pol split verify --response R=FILE --challenge R=FILE``) refuses a response
  to any other challenge (exit 2), replays exactly its own challenge's segments, and fails the
  node's ``replay`` when a returned state does not hash to its committed digest.

Without a response the verifier regenerates the start states itself (same result, up to K
times the replay work). The node learns the segments only after committing every digest.
"""

from __future__ import annotations

import json
import os
import random
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from pol import codec as _codec
from pol.errors import InputError, ProofFormatError, short_reason
from pol.hashing import canonical_json
from pol.plan import utc_now
from pol.split.proof import MAX_ELEMENTS, NodeProofReader
from pol.smallfiles import parse_json

CHALLENGE_SCHEMA = "pol-split-challenge-v1"
RESPONSE_FORMAT = "pol-split-response"
_BOUND = ("schema", "plan_digest", "rank", "chain_head", "segments", "nonce")
State = dict[str, np.ndarray]


def _binding(reader: NodeProofReader) -> dict[str, Any]:
    if reader.final is None:
        raise InputError(f"node {reader.rank}'s proof is unfinished (no final signature); nothing to challenge")
    return {"plan_digest": reader.plan_digest.hex(), "rank": reader.rank, "chain_head": reader.final["chain_head"].hex()}


def make_challenge(reader: NodeProofReader, count: int, seed: int | None = None) -> dict[str, Any]:
    n = reader.num_checkpoints - 1
    nonce = secrets.token_bytes(16) if seed is None else seed.to_bytes(16, "little", signed=True)
    rng = random.Random(int.from_bytes(nonce, "little"))
    return {"schema": CHALLENGE_SCHEMA, **_binding(reader), "segments": sorted(rng.sample(range(n), min(count, n))),
            "nonce": nonce.hex(), "issued_at": utc_now()}


def save_challenge(challenge: dict[str, Any], path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(challenge, indent=2, sort_keys=True) + "\n")


def read_challenge(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        doc = parse_json(Path(path).read_text(), "challenge", ValueError)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read challenge {path}: {short_reason(exc)}") from None
    if not isinstance(doc, dict) or doc.get("schema") != CHALLENGE_SCHEMA or not isinstance(doc.get("segments"), list):
        raise InputError(f"{path} is not a {CHALLENGE_SCHEMA} document")
    return doc


def _segments(challenge: dict[str, Any], reader: NodeProofReader) -> list[int]:
    segments = challenge.get("segments")
    n = reader.num_checkpoints - 1
    if not isinstance(segments, list) or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < n
                                                 for s in segments):
        raise InputError("the challenge's segment list is malformed")
    return sorted(set(segments))


def respond(reader: NodeProofReader, challenge: dict[str, Any], out: str | os.PathLike[str], replayer: Any) -> list[int]:
    """Node side: regenerate the challenged start checkpoints that are not stored and write the
    response; returns the checkpoints it holds."""
    import h5py

    if {k: challenge.get(k) for k in ("plan_digest", "rank", "chain_head")} != _binding(reader):
        raise InputError("this challenge was issued for another node proof")
    wanted = [s for s in _segments(challenge, reader) if not reader.has_checkpoint(s)]
    try:
        states = replayer.states_at(wanted)
    except ValueError as exc:
        raise InputError(f"cannot answer the challenge on this stack: {exc}") from None
    with h5py.File(out, "w") as f:
        f.attrs["format"] = RESPONSE_FORMAT
        f.attrs["format_version"] = 1
        f.attrs["challenge"] = canonical_json({k: challenge[k] for k in (*_BOUND, "issued_at") if k in challenge}).decode()
        group = f.create_group("states")
        for i, state in sorted(states.items()):
            encoded = _codec.encode_checkpoint(state, None)
            g = group.create_group(f"{i:06d}")
            for part in ("index", "deltas", "plain"):
                g.create_dataset(part, data=np.frombuffer(getattr(encoded, part), np.uint8))
    return sorted(states)


def response_states(response: str | os.PathLike[str], issued: dict[str, Any],
                    reader: NodeProofReader) -> tuple[list[int], dict[int, State]]:
    """Verifier side: the segments of the challenge it issued and the returned start states,
    after checking that the response answers exactly that challenge (else exit 2). The states
    are untrusted: the replay checks each against its committed digest."""
    from pol.untrusted_h5 import UntrustedFile

    if {k: issued.get(k) for k in ("plan_digest", "rank", "chain_head")} != _binding(reader):
        raise InputError(f"the challenge was issued for another node proof than node {reader.rank}'s")
    segments = _segments(issued, reader)
    try:
        with UntrustedFile(response, what="node challenge response") as sanitised:  # the sandboxed reader
            f = sanitised.root
            if f.attrs.get("format") != RESPONSE_FORMAT or f.attrs.get("format_version") != 1:
                raise ProofFormatError(f"{response} is not a {RESPONSE_FORMAT} file")
            answered = parse_json(str(f.attrs["challenge"]), "embedded challenge", ValueError)
            if not isinstance(answered, dict) or {k: answered.get(k) for k in _BOUND} != {k: issued.get(k) for k in _BOUND}:
                raise InputError("the response answers a different challenge than the one you issued")
            states: dict[int, State] = {}
            group = f["states"]
            for key in group.keys():
                if not (key.isdigit() and len(key) == 6 and int(key) in segments):
                    raise ProofFormatError(f"unexpected entry {key[:20]!r} in the response")
                parts = {p: bytes(np.asarray(group[key][p][()], np.uint8).tobytes()) for p in ("index", "deltas", "plain")}
                states[int(key)] = _codec.decode_checkpoint(_codec.Encoded(**parts), None, MAX_ELEMENTS)
    except (InputError, ProofFormatError):
        raise
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ProofFormatError(f"{response} is malformed: {short_reason(exc)}") from None
    return segments, states
