"""Challenges for compact proofs: interactive, and non-interactive (Fiat-Shamir).

A compact proof stores full checkpoints only at anchors, plus the committed digest of every
checkpoint. To check segment j the verifier needs checkpoint j; the replayed end is compared
with the committed digest of checkpoint j+1, so compact proofs are verified in exact mode:

* **interactive** — the verifier draws segments with its own randomness and writes a
  challenge (``pol challenge``); the prover regenerates the start checkpoints by exact replay
  from the nearest anchor and writes a response (``pol respond``); the verifier checks every
  returned state against its committed digest, then replays the segments of *its own*
  challenge file (``pol verify --response R --challenge C``; a response whose embedded challenge
  differs from C is refused). The prover learns the segments only after committing to every
  digest: sound as in full mode.
* **non-interactive** — segments derived from the chain head:
  ``SHA-256("pol-fiat-shamir-v1" || plan digest || chain head)`` seeds the choice, and the
  prover embeds the response in the proof (``pol respond --non-interactive``). The prover can
  *grind*: alter something cheap (e.g. the last checkpoint's bits), re-chain, re-sign, and
  re-derive the challenge until only honest segments are picked. With a forged fraction f and
  s challenged segments, one re-roll passes with probability (1-f)^s, so about (1-f)^-s cheap
  re-rolls suffice (f=0.1, s=10: ~3 tries). Treat it as evidence against careless forgery, not
  as a proof against a deliberate forger; use the interactive flow for disputes. An embedded
  response to fewer segments than the verifier would draw is not used to choose segments.
* **neither** — the verifier regenerates the start checkpoint itself from the nearest anchor
  (exact mode only), at up to K times the replay cost.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from pol.errors import InputError, ProofFormatError
from pol.hashing import canonical_json
from pol.plan import utc_now
from pol.proof_file import MAX_ELEMENTS, ProofReader
from pol.state import State

CHALLENGE_SCHEMA = "pol-challenge-v1"
RESPONSE_FORMAT = "pol-response"
CHALLENGE_FIELDS = ("schema", "plan_digest", "chain_head", "segments", "nonce")  # what a response must echo
NON_INTERACTIVE_NOTE = ("non-interactive (Fiat-Shamir over the chain head): a prover can grind re-rolls; "
                        "about (1-f)^-s cheap tries defeat it, see docs/SECURITY.md")


def fiat_shamir_segments(plan_digest: bytes, chain_head: bytes, n: int, count: int) -> list[int]:
    seed = int.from_bytes(hashlib.sha256(b"pol-fiat-shamir-v1" + plan_digest + chain_head).digest()[:8], "little")
    return sorted(random.Random(seed).sample(range(n), min(count, n)))


def _binding(reader: ProofReader) -> dict[str, str]:
    if reader.final is None:
        raise InputError("the proof is unfinished (no final signature); nothing to challenge")
    return {"plan_digest": reader.plan_digest.hex(), "chain_head": reader.final["chain_head"].hex()}


def make_challenge(reader: ProofReader, count: int, seed: int | None = None) -> dict[str, Any]:
    n = reader.num_checkpoints - 1
    nonce = secrets.token_bytes(16) if seed is None else hashlib.sha256(b"seed" + seed.to_bytes(8, "little")).digest()[:16]
    rng = random.Random(int.from_bytes(nonce, "little"))
    return {"schema": CHALLENGE_SCHEMA, **_binding(reader), "segments": sorted(rng.sample(range(n), min(count, n))),
            "nonce": nonce.hex(), "issued_at": utc_now()}


def needed_checkpoints(reader: ProofReader, segments: list[int]) -> list[int]:
    """Start checkpoints of the segments that are not stored whole (ends are checked by digest)."""
    return sorted({j for j in segments if not reader.is_complete(j)})


def regenerate(reader: ProofReader, replayer: Any, wanted: list[int]) -> dict[int, State]:
    """Prover side: rebuild checkpoints by exact replay from anchors, checking committed digests."""
    from verifier.segments import RegenerationError, replay_forward

    out: dict[int, State] = {}
    remaining = sorted(set(wanted))
    while remaining:
        target = remaining[-1]
        anchor = max(a for a in range(target) if reader.is_complete(a))
        group = [i for i in remaining if anchor < i <= target]
        try:
            replay_forward(reader, replayer, anchor, reader.checkpoint_state(anchor), target, set(group), out)
        except RegenerationError as exc:
            raise InputError(f"cannot answer the challenge on this stack: {exc}") from None
        remaining = [i for i in remaining if i not in group]
    return out


def _write_states(group: Any, states: dict[int, State]) -> None:
    for i, state in sorted(states.items()):
        g = group.create_group(f"{i:06d}")
        for name, arr in sorted(state.items()):
            g.create_dataset(name, data=arr, **({"compression": "gzip", "shuffle": True} if arr.size > 16 else {}))


def _read_states(group: Any) -> dict[int, State]:
    out: dict[int, State] = {}
    for key in group:
        if not key.isdigit():
            raise ProofFormatError(f"unexpected entry {key!r} in a response")
        if not hasattr(group[key], "visititems"):
            raise ProofFormatError(f"response entry {key!r} is not a group of tensors")
        state: State = {}

        def visit(name: str, obj: Any, state: State = state) -> None:
            if hasattr(obj, "dtype"):  # untrusted: the same limits as ProofReader's checkpoints
                if obj.dtype.kind not in "fiub" or obj.size > MAX_ELEMENTS:
                    raise ProofFormatError(f"response tensor {name} has an unsupported dtype or size")
                state[name] = np.asarray(obj[()])

        group[key].visititems(visit)
        out[int(key)] = state
    return out


def write_response(path: str | os.PathLike[str], reader: ProofReader, challenge: dict[str, Any],
                   states: dict[int, State]) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["format"] = RESPONSE_FORMAT
        f.attrs["format_version"] = 1
        f.attrs["challenge"] = canonical_json(challenge).decode()
        _write_states(f.create_group("states"), states)


def embed_response(reader_path: str | os.PathLike[str], count: int, states_fn: Any,
                   model_spec: str | None = None) -> list[int]:
    """Non-interactive: derive segments from the chain head and embed their states in the proof.

    ``model_spec`` names the model code for a custom model (checkpoint 0 decodes against it)."""
    import h5py

    with ProofReader(reader_path, model_spec=model_spec) as reader:
        b = _binding(reader)
        segments = fiat_shamir_segments(reader.plan_digest, bytes.fromhex(b["chain_head"]),
                                        reader.num_checkpoints - 1, count)
        states = states_fn(reader, needed_checkpoints(reader, segments))
    with h5py.File(reader_path, "r+") as f:
        if "responses" in f:
            del f["responses"]
        g = f.create_group("responses")
        g.attrs["kind"] = "fiat-shamir"
        g.attrs["segments"] = ",".join(map(str, segments))
        _write_states(g.create_group("states"), states)
    return segments


def _load_challenge(path: str | os.PathLike[str]) -> dict[str, Any]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != RESPONSE_FORMAT:
                raise ProofFormatError(f"{path} is not a challenge response")
            doc = json.loads(str(f.attrs["challenge"]))
    except OSError as exc:
        raise ProofFormatError(f"{path} is not a readable response file ({exc})") from None
    except (KeyError, ValueError) as exc:
        raise ProofFormatError(f"{path}: malformed challenge in response ({exc})") from None
    if not isinstance(doc, dict):
        raise ProofFormatError(f"{path}: the challenge in the response is not a JSON object")
    return doc


def response_segments(path: str | os.PathLike[str], reader: ProofReader) -> list[int]:
    challenge = _load_challenge(path)
    if challenge.get("schema") != CHALLENGE_SCHEMA:
        raise ProofFormatError("the response answers an unknown challenge schema")
    if {k: challenge.get(k) for k in ("plan_digest", "chain_head")} != _binding(reader):
        raise ProofFormatError("the response answers a challenge for a different proof")
    return _valid_segments(challenge.get("segments"), reader)


def _valid_segments(segments: Any, reader: ProofReader) -> list[int]:
    if not isinstance(segments, list) or not all(isinstance(s, int) and 0 <= s < reader.num_checkpoints - 1 for s in segments):
        raise ProofFormatError("the challenge's segment list is malformed")
    return sorted(set(segments))


def issued_segments(response: str | os.PathLike[str], issued: str | os.PathLike[str], reader: ProofReader) -> list[int]:
    """Verifier side: the segments of the challenge it issued (file ``issued``), after checking
    that ``response`` answers exactly that challenge. The prover cannot pick the segments."""
    doc = read_challenge(issued)
    if {k: doc.get(k) for k in ("plan_digest", "chain_head")} != _binding(reader):
        raise InputError(f"the challenge {issued} was issued for a different proof")
    if {k: _load_challenge(response).get(k) for k in CHALLENGE_FIELDS} != {k: doc.get(k) for k in CHALLENGE_FIELDS}:
        raise InputError("the response answers a different challenge than the one you issued")
    return _valid_segments(doc["segments"], reader)


def load_response_states(path: str | os.PathLike[str], reader: ProofReader) -> dict[int, State]:
    import h5py

    response_segments(path, reader)
    with h5py.File(path, "r") as f:
        return _read_states(f["states"]) if "states" in f else {}


def embedded_segments(reader: ProofReader) -> list[int]:
    try:
        text = str(reader.h5["responses"].attrs["segments"])
        segments = [int(s) for s in text.split(",") if s]
    except (KeyError, ValueError) as exc:
        raise ProofFormatError(f"malformed embedded response ({exc})") from None
    b = _binding(reader)
    derived = fiat_shamir_segments(reader.plan_digest, bytes.fromhex(b["chain_head"]), reader.num_checkpoints - 1,
                                   len(segments))
    if segments != derived:
        raise ProofFormatError("the embedded response does not answer the challenge derived from the chain head")
    return segments


def load_embedded_response(reader: ProofReader) -> dict[int, State]:
    g = reader.h5["responses"]
    return _read_states(g["states"]) if "states" in g else {}


def save_challenge(challenge: dict[str, Any], path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(challenge, indent=2) + "\n")


def read_challenge(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read challenge {path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != CHALLENGE_SCHEMA or not isinstance(doc.get("segments"), list):
        raise InputError(f"{path} is not a {CHALLENGE_SCHEMA} document")
    return doc
