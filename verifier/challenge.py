"""Challenges: the verifier names segments and single steps; the prover returns their start states.

A proof commits the state digest of every checkpoint and (format 3, ``step_digests``) of the
state after every step. To check a segment or a single step whose start state is not stored, the
verifier needs that state; the replayed end is compared with the committed digest, so challenges
are judged in exact mode:

* **interactive** — the verifier draws segments and steps with its own randomness, adds the
  segments it always replays (verifier.sampling: the last one, the largest updates...), and writes
  a challenge (``pol challenge``); the prover regenerates the start states by exact replay from the
  nearest stored checkpoint and writes a response (``pol respond``); the verifier checks every
  returned state against its committed digest, then replays what *its own* challenge file names
  (``pol verify --response R --challenge C``; a response whose embedded challenge differs from C is
  refused). The prover learns the sample only after committing to every digest: a forged step is
  caught when it is drawn. Verifier compute per challenged step: one step.
* **non-interactive** — segments and steps derived from the chain head:
  ``SHA-256("pol-fiat-shamir-v2" || plan digest || chain head)`` seeds the choice, and the prover
  embeds the response in the proof (``pol respond --non-interactive``). The prover can *grind*:
  alter something free (a forged state's last bit), re-chain, re-sign and re-derive until only
  honest units are drawn. With a forged fraction f and s units, one try passes with probability
  (1-f)^s, so about (1-f)^-s cheap tries suffice (f=0.1, s=10: ~3 tries; s=44: ~100 tries, i.e.
  ~100 re-hashes of the chain). A verifier uses an embedded response only when asked
  (``pol verify --use-embedded-response``), and the report says so.
* **neither** — the verifier regenerates start states itself from the nearest stored checkpoint
  (exact mode only), at up to k (or K x k for compact proofs) steps per unit.
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
from pol.hashing import canonical_json, state_digest
from pol.plan import utc_now
from pol.proof_file import ProofReader
from pol.schema import Attr, Group
from pol.state import State
from pol.untrusted_h5 import Node, UntrustedFile

CHALLENGE_SCHEMA = "pol-challenge-v2"
RESPONSE_FORMAT = "pol-response"
RESPONSE_VERSION = 2
CHALLENGE_FIELDS = ("schema", "plan_digest", "chain_head", "segments", "steps", "nonce")  # what a response must echo
MAX_CHALLENGE_BYTES = 1 << 22
MAX_CHALLENGE_UNITS = 1_000_000
NON_INTERACTIVE_NOTE = ("non-interactive (Fiat-Shamir over the chain head), used because you asked: a prover can "
                        "grind re-rolls; about (1-f)^-s cheap tries defeat it, see docs/SECURITY.md")
STEP_NAME = r"[0-9]{12}"
CKPT_NAME = r"[0-9]{6}"
_STATES = Group(pattern=CKPT_NAME, each=Group(any_tree=True))
_STEP_STATES = Group(pattern=STEP_NAME, each=Group(any_tree=True))
RESPONSE_LAYOUT = Group(
    attrs={"format": Attr(str, check=lambda v: v == RESPONSE_FORMAT, what=repr(RESPONSE_FORMAT)),
           "format_version": Attr(int, check=lambda v: v == RESPONSE_VERSION, what=str(RESPONSE_VERSION)),
           "challenge": Attr(str)},
    members={"states": _STATES, "steps": _STEP_STATES}, optional=frozenset({"states", "steps"}))


def _derived_choice(seed_bytes: bytes, n_segments: int, segments: int, n_steps: int, steps: int) -> tuple[list[int], list[int]]:
    rng = random.Random(int.from_bytes(seed_bytes[:8], "little"))
    chosen = sorted(rng.sample(range(n_segments), min(segments, n_segments)))
    return chosen, sorted(rng.sample(range(n_steps), min(steps, n_steps)))


def fiat_shamir_choice(plan_digest: bytes, chain_head: bytes, n_segments: int, segments: int,
                       n_steps: int, steps: int) -> tuple[list[int], list[int]]:
    seed = hashlib.sha256(b"pol-fiat-shamir-v2" + plan_digest + chain_head).digest()
    return _derived_choice(seed, n_segments, segments, n_steps, steps)


def _binding(reader: ProofReader) -> dict[str, str]:
    if reader.final is None:
        raise InputError("the proof is unfinished (no final signature); nothing to challenge")
    return {"plan_digest": reader.plan_digest.hex(), "chain_head": reader.final["chain_head"].hex()}


def make_challenge(reader: ProofReader, segments: int, steps: int = 0, seed: int | None = None,
                   targeted: list[int] | None = None) -> dict[str, Any]:
    """A challenge: ``segments`` uniform segments plus ``targeted`` ones, and ``steps`` single steps."""
    n = reader.num_checkpoints - 1
    if steps and reader.step_state_digests is None:
        raise InputError("this proof does not commit per-step digests, so single steps cannot be challenged")
    nonce = secrets.token_bytes(16) if seed is None else hashlib.sha256(b"seed" + seed.to_bytes(8, "little", signed=True)).digest()[:16]
    chosen, chosen_steps = _derived_choice(hashlib.sha256(nonce).digest(), n, segments, reader.plan.num_steps, steps)
    return {"schema": CHALLENGE_SCHEMA, **_binding(reader), "segments": sorted(set(chosen) | set(targeted or [])),
            "steps": chosen_steps, "nonce": nonce.hex(), "issued_at": utc_now()}


def compose_challenge(reader: ProofReader, *, segments: int | None = None, steps: int | None = None,
                      confidence: float | None = None, forged_fraction: float | None = None, top_updates: int = 2,
                      seed: int | None = None) -> tuple[dict[str, Any], list[int]]:
    """What ``pol challenge`` issues: (the challenge, the targeted segments it includes).

    ``confidence`` with ``forged_fraction`` sets the number of units: single steps where the proof
    commits per-step digests (and ``steps`` is not given; no uniform segments then unless asked),
    else segments. Without them: ``steps`` as given and about 4% of the segments (none when only
    steps are asked for). The targeted segments (the last one, and with ``top_updates`` the largest
    updates) are always added."""
    from verifier.api import _last_stretch
    from verifier.sampling import default_segment_count, samples_for, targeted_segments
    from verifier.scan import scan_checkpoints

    if (confidence is None) != (forged_fraction is None):
        raise InputError("--confidence and --forged-fraction go together")
    n, total = reader.num_checkpoints - 1, reader.plan.num_steps
    if confidence is not None and forged_fraction is not None:
        if reader.step_state_digests is not None and steps is None:
            steps = samples_for(total, confidence, forged_fraction)
            segments = 0 if segments is None else segments
        elif segments is None:
            segments = samples_for(n, confidence, forged_fraction)
    if segments is None:
        segments = 0 if steps else default_segment_count(n)
    targeted = targeted_segments(scan_checkpoints(reader), n, top_updates,
                                 _last_stretch(reader) if reader.mode == "compact" else None).segments
    return make_challenge(reader, segments, steps or 0, seed, targeted), targeted


def needed_checkpoints(reader: ProofReader, segments: list[int]) -> list[int]:
    """Start checkpoints of the segments that are not stored whole (ends are checked by digest)."""
    return sorted({j for j in segments if not reader.is_complete(j)})


def needed_steps(reader: ProofReader, steps: list[int]) -> list[int]:
    """Steps whose start state (the state after ``t`` steps) is not a checkpoint stored whole."""
    whole = {int(reader.checkpoint_steps[i]) for i in reader.stored_checkpoints if reader.is_complete(i)}
    return sorted({t for t in steps if t not in whole})


def regenerate(reader: ProofReader, replayer: Any, wanted_steps: list[int]) -> dict[int, State]:
    """Prover side: the states after ``wanted_steps`` steps, by exact replay from the nearest
    checkpoint stored whole, checking every committed digest on the way."""
    from pol.hashing import state_digest as digest_of
    from verifier.segments import RegenerationError

    complete = [i for i in reader.stored_checkpoints if reader.is_complete(i)]
    steps_of = {int(reader.checkpoint_steps[i]): i for i in range(reader.num_checkpoints)}
    out: dict[int, State] = {}
    remaining = sorted(set(wanted_steps))
    per_step = reader.step_state_digests
    while remaining:
        target = remaining[-1]
        anchor = max(i for i in complete if int(reader.checkpoint_steps[i]) <= target)
        a = int(reader.checkpoint_steps[anchor])
        group = {t for t in remaining if a <= t <= target}
        state = {k: v.copy() for k, v in reader.checkpoint_state(anchor).items()}
        if a in group:
            out[a] = state
        if target > a:
            def keep(t: int, s: State) -> None:
                committed = per_step[t] if per_step is not None else (
                    reader.state_digests[steps_of[t]] if t in steps_of else None)
                if committed is not None and digest_of(s) != committed:
                    raise RegenerationError(f"replaying from checkpoint {anchor} does not reproduce the committed "
                                            f"state after step {t}")
                if t in group:
                    out[t] = s

            end = replayer.run(state, a, reader.indices(a, target), keep)
            keep(target, end)
        remaining = [t for t in remaining if t not in group]
    return out


def _write_states(group: Any, states: dict[int, State], width: int) -> None:
    for i, state in sorted(states.items()):
        g = group.create_group(f"{i:0{width}d}")
        for name, arr in sorted(state.items()):
            g.create_dataset(name, data=arr, **({"compression": "gzip", "shuffle": True} if arr.size > 16 else {}))


def _read_states(node: Node | None) -> dict[int, State]:
    out: dict[int, State] = {}
    for key, child in (node.members.items() if node is not None else ()):
        out[int(key)] = {name: np.array(ds.read()) for name, ds in child.visit_datasets()}
    return out


def write_response(path: str | os.PathLike[str], reader: ProofReader, challenge: dict[str, Any],
                   states: dict[int, State], step_states: dict[int, State]) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["format"] = RESPONSE_FORMAT
        f.attrs["format_version"] = RESPONSE_VERSION
        f.attrs["challenge"] = canonical_json(challenge).decode()
        _write_states(f.create_group("states"), states, 6)
        _write_states(f.create_group("steps"), step_states, 12)


def embed_response(reader_path: str | os.PathLike[str], segments: int, steps: int, states_fn: Any,
                   model_spec: str | None = None) -> tuple[list[int], list[int]]:
    """Non-interactive: derive segments and steps from the chain head and embed their start states.

    ``states_fn(reader, wanted_steps) -> {step: state}`` regenerates states; ``model_spec`` names
    the model code for a custom model (checkpoint 0 of a compact proof decodes against it)."""
    import h5py

    with ProofReader(reader_path, model_spec=model_spec) as reader:
        if reader.mode != "compact":
            raise InputError("only compact proofs embed responses (a full proof stores every checkpoint)")
        b = _binding(reader)
        chosen, chosen_steps = fiat_shamir_choice(reader.plan_digest, bytes.fromhex(b["chain_head"]),
                                                  reader.num_checkpoints - 1, segments,
                                                  reader.plan.num_steps if reader.step_state_digests else 0, steps)
        ckpts = needed_checkpoints(reader, chosen)
        wanted = sorted({int(reader.checkpoint_steps[i]) for i in ckpts} | set(needed_steps(reader, chosen_steps)))
        by_step = states_fn(reader, wanted)
        states = {i: by_step[int(reader.checkpoint_steps[i])] for i in ckpts}
        step_states = {t: by_step[t] for t in needed_steps(reader, chosen_steps)}
    with h5py.File(reader_path, "r+") as f:
        if "responses" in f:
            del f["responses"]
        g = f.create_group("responses")
        g.attrs["kind"] = "fiat-shamir"
        g.attrs["segments"] = ",".join(map(str, chosen))
        g.attrs["steps"] = ",".join(map(str, chosen_steps))
        _write_states(g.create_group("states"), states, 6)
        _write_states(g.create_group("step_states"), step_states, 12)
    return chosen, chosen_steps


def read_response(path: str | os.PathLike[str], reader: ProofReader) -> tuple[dict[str, Any], dict[int, State], dict[int, State]]:
    """(the challenge it answers, checkpoint states by index, step states by step), read in the sandbox."""
    with UntrustedFile(path, what="challenge response") as f:
        RESPONSE_LAYOUT.validate(f.root, "response /")
        text = f.root.attrs["challenge"]
        if len(text) > MAX_CHALLENGE_BYTES:
            raise ProofFormatError("the response's challenge is too large")
        from pol.smallfiles import parse_json

        doc = parse_json(text, f"{path}: the challenge in the response", ProofFormatError)
        if not isinstance(doc, dict):
            raise ProofFormatError(f"{path}: the challenge in the response is not a JSON object")
        return doc, _read_states(f.root.get("states")), _read_states(f.root.get("steps"))


def _valid_units(values: Any, limit: int, what: str) -> list[int]:
    if not isinstance(values, list) or len(values) > MAX_CHALLENGE_UNITS or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < limit for s in values):
        raise ProofFormatError(f"the challenge's {what} list is malformed")
    return sorted(set(values))


def challenged_units(doc: dict[str, Any], reader: ProofReader) -> tuple[list[int], list[int]]:
    """The segments and steps a challenge names, each within this proof (ProofFormatError otherwise)."""
    if {k: doc.get(k) for k in ("plan_digest", "chain_head")} != _binding(reader):
        raise InputError("the challenge was issued for a different proof")
    return (_valid_units(doc["segments"], reader.num_checkpoints - 1, "segment"),
            _valid_units(doc.get("steps", []), reader.plan.num_steps, "step"))


def issued_units(response: str | os.PathLike[str], issued: str | os.PathLike[str],
                 reader: ProofReader) -> tuple[list[int], list[int], dict[int, State], dict[int, State]]:
    """Verifier side: the segments and steps of the challenge it issued (file ``issued``), after
    checking that ``response`` answers exactly that challenge; plus the response's states."""
    doc = read_challenge(issued)
    segments, steps = challenged_units(doc, reader)
    answered, states, step_states = read_response(response, reader)
    if {k: answered.get(k) for k in CHALLENGE_FIELDS} != {k: doc.get(k) for k in CHALLENGE_FIELDS}:
        raise InputError("the response answers a different challenge than the one you issued")
    # Only the states the challenge asks for (what `pol respond` writes): anything more is unsigned
    # bulk the verifier would carry unread (the fuzz corpus's 30,000 extra /states groups).
    extra = sorted(set(states) - set(needed_checkpoints(reader, segments)))
    extra_steps = sorted(set(step_states) - set(needed_steps(reader, steps)))
    if extra or extra_steps:
        what = f"checkpoint state(s) {extra[:4]}" if extra else f"step state(s) {extra_steps[:4]}"
        raise ProofFormatError(f"the response holds {what} the challenge does not ask for (refused)")
    return segments, steps, states, step_states


def embedded_units(reader: ProofReader) -> tuple[list[int], list[int]]:
    node = reader.section("responses")
    if node is None:
        return [], []
    try:
        segments = [int(s) for s in node.attrs["segments"].split(",") if s]
        steps = [int(s) for s in node.attrs["steps"].split(",") if s]
    except ValueError as exc:
        raise ProofFormatError(f"malformed embedded response ({exc})") from None
    b = _binding(reader)
    derived = fiat_shamir_choice(reader.plan_digest, bytes.fromhex(b["chain_head"]), reader.num_checkpoints - 1,
                                 len(segments), reader.plan.num_steps, len(steps))
    if (segments, steps) != derived:
        raise ProofFormatError("the embedded response does not answer the challenge derived from the chain head")
    return segments, steps


def load_embedded_response(reader: ProofReader) -> tuple[dict[int, State], dict[int, State]]:
    node = reader.section("responses")
    if node is None:
        return {}, {}
    return _read_states(node.get("states")), _read_states(node.get("step_states"))


def checked_state(state: State, committed: bytes, what: str) -> State:
    if state_digest(state) != committed:
        raise ProofFormatError(f"the response's {what} does not match its committed digest")
    return state


def save_challenge(challenge: dict[str, Any], path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(challenge, indent=2) + "\n")


def read_challenge(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A challenge file (untrusted: a prover reads the verifier's, a verifier its own copy):
    strict JSON of at most :data:`MAX_CHALLENGE_BYTES`, with the fields :func:`make_challenge` writes."""
    from pol.smallfiles import parse_json, read_small_file

    doc = parse_json(read_small_file(path, MAX_CHALLENGE_BYTES, "challenge", InputError), f"challenge {path}")
    if not isinstance(doc, dict) or doc.get("schema") != CHALLENGE_SCHEMA or not isinstance(doc.get("segments"), list):
        raise InputError(f"{path} is not a {CHALLENGE_SCHEMA} document")
    for name in ("segments", "steps"):
        units = doc.get(name, [])
        if not isinstance(units, list) or len(units) > MAX_CHALLENGE_UNITS or not all(
                isinstance(u, int) and not isinstance(u, bool) and 0 <= u < 1 << 62 for u in units):
            raise InputError(f"{path}: {name} must be a list of at most {MAX_CHALLENGE_UNITS} non-negative integers")
    for name in ("plan_digest", "chain_head", "nonce"):
        if not isinstance(doc.get(name), str) or not doc[name] or len(doc[name]) > 128 or \
                any(ch not in "0123456789abcdef" for ch in doc[name]):
            raise InputError(f"{path}: {name} must be lowercase hex")
    return doc
