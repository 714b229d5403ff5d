"""Rejection evidence: what a verifier attaches to a "rejected" vote, and how anyone re-checks it.

Two kinds:

* ``replay`` — a unit (a single step ``t``, or a segment when the proof commits no per-step
  digests) with the committed digest of its start state, the committed digest of its end state
  and the digest the voter's replay produced. Re-checking replays **that one unit** from the
  committed start state (exact mode): the evidence holds when the end digest is not reproduced.
  Evidence naming digests the proof does not commit, or a unit that replays to its committed
  digest, is refuted. The voter's replayed digest is never trusted: the re-checker recomputes it.
* ``check`` — the name of a deterministic integrity check (signatures, chain, plan consistency,
  data commitment, initialization, ...). Re-checking runs the proof's integrity checks without
  replay. ``signer`` is not evidence: whom to trust is each party's own choice.

A re-check that finds the proof failing *elsewhere* (an earlier step while regenerating the
start state, another integrity check) confirms the rejection and says where: nothing is
confirmed unless the re-checker's own computation shows the proof to be false.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from pol.proof_file import ProofReader
from verifier import untrusted_json as uj
from verifier.unit_replay import EarlierMismatch, ExactUnitReplayer, committed_digest_after

REPLAY, CHECK = "replay", "check"
STEP, SEGMENT = "step", "segment"
#: Checks whose failure anyone re-runs without sampling (``signer`` depends on whom one trusts).
RECHECKABLE_CHECKS = ("plan_signature", "final_signature", "chain", "checkpoints", "plan_consistency",
                      "final_weights", "data_commitment", "initialization")
_FIELDS = {"kind", "node", "unit", "index", "start_step", "stop_step", "start_digest", "committed", "replayed",
           "check", "detail"}


@dataclass(frozen=True)
class Evidence:
    kind: str
    node: int | None = None
    unit: str | None = None
    index: int | None = None          # step t (unit "step") or segment j (unit "segment")
    start_step: int | None = None
    stop_step: int | None = None
    start_digest: bytes | None = None
    committed: bytes | None = None
    replayed: bytes | None = None
    check: str | None = None
    detail: str = ""

    def key(self) -> tuple[Any, ...]:
        """Identity for de-duplication: the same claim by several voters is re-checked once."""
        return (self.kind, self.node, self.unit, self.start_step, self.stop_step, self.start_digest, self.committed,
                self.check)

    def describe(self) -> str:
        node = f"node {self.node}, " if self.node is not None else ""
        if self.kind == CHECK:
            return f"{node}check {self.check}"
        what = f"step {self.index}" if self.unit == STEP else f"segment {self.index} (steps {self.start_step}-{self.stop_step})"
        return f"{node}{what}: committed {_short(self.committed)}, replayed {_short(self.replayed)}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "node": self.node, "unit": self.unit, "index": self.index,
                "start_step": self.start_step, "stop_step": self.stop_step,
                "start_digest": _hex(self.start_digest), "committed": _hex(self.committed),
                "replayed": _hex(self.replayed), "check": self.check, "detail": self.detail[:500]}

    @classmethod
    def from_json(cls, obj: Any, what: str) -> "Evidence":
        if not isinstance(obj, dict):
            raise uj.DocumentError(f"{what}: evidence must be an object")
        uj.no_other_fields(obj, _FIELDS, what)
        kind = uj.field(obj, "kind", str, what)
        node = uj.field(obj, "node", int, what, optional=True)
        detail = uj.field(obj, "detail", str, what)[:500]
        if kind == CHECK:
            check = uj.field(obj, "check", str, what)
            if check not in RECHECKABLE_CHECKS:
                raise uj.DocumentError(f"{what}: {check[:40]!r} is not a check anyone can re-run "
                                       f"(one of {', '.join(RECHECKABLE_CHECKS)})")
            return cls(CHECK, node, check=check, detail=detail)
        if kind != REPLAY:
            raise uj.DocumentError(f"{what}: evidence kind must be {REPLAY!r} or {CHECK!r}")
        unit = uj.field(obj, "unit", str, what)
        if unit not in (STEP, SEGMENT):
            raise uj.DocumentError(f"{what}: unit must be {STEP!r} or {SEGMENT!r}")
        ints = [uj.field(obj, k, int, what) for k in ("index", "start_step", "stop_step")]
        if min(ints) < 0 or ints[1] >= ints[2] or (unit == STEP and (ints[0] != ints[1] or ints[2] != ints[1] + 1)):
            raise uj.DocumentError(f"{what}: inconsistent unit bounds")
        digests = [uj.hex_field(obj, k, 32, what) for k in ("start_digest", "committed", "replayed")]
        return cls(REPLAY, node, unit, ints[0], ints[1], ints[2], *digests, detail=detail)


def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def _short(b: bytes | None) -> str:
    return "-" if b is None else b.hex()[:12] + "…"


# -- the voter's side ---------------------------------------------------------------------------
def localize(units: ExactUnitReplayer, start: int, stop: int, detail: str = "") -> Evidence | None:
    """Evidence for a unit that failed replay: the first step that does not reproduce when the proof
    commits per-step digests, else the whole segment. None when the unit replays fine here."""
    try:
        r = units.replay(start, stop)
    except EarlierMismatch as exc:
        return localize(units, exc.step, exc.step + 1, detail) if exc.step < start else None
    if r.first_bad_step is not None and units.reader.step_state_digests is not None:
        t = r.first_bad_step
        return Evidence(REPLAY, None, STEP, t, t, t + 1, committed_digest_after(units.reader, t),
                        committed_digest_after(units.reader, t + 1), r.replayed_digests[t - start], detail=detail)
    if r.reproduced:
        return None
    single = stop == start + 1
    index = start if single else [int(s) for s in units.reader.checkpoint_steps].index(start)
    return Evidence(REPLAY, None, STEP if single else SEGMENT, index, start, stop, r.start_digest, r.committed,
                    r.replayed, detail=detail)


# -- re-checking ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """What re-checking one piece of evidence showed."""

    confirmed: bool
    detail: str
    recomputed: bytes | None = None


class Rechecker(Protocol):
    """Re-checks evidence against the subject it is about (one proof; later, a pipeline's nodes)."""

    def recheck(self, evidence: Evidence) -> Finding: ...


class ProofRechecker:
    """Re-checks evidence about one single-process proof, replaying only the unit named."""

    def __init__(self, proof: str | os.PathLike[str], *, data: str | None = None, model: str | None = None,
                 loss: str | None = None, device: str = "auto", data_kwargs: dict | None = None):
        self.proof, self.data, self.model, self.loss, self.device = proof, data, model, loss, device
        self.data_kwargs = data_kwargs
        self._units: ExactUnitReplayer | None = None
        self._reader: ProofReader | None = None
        self._integrity: dict[str, bool | None] | None = None
        self.replayed_steps = 0

    def _replayer(self) -> ExactUnitReplayer:
        if self._units is None:
            self._reader = ProofReader(self.proof, model_spec=self.model)
            self._units = ExactUnitReplayer(self._reader, data=self.data, model=self.model, loss=self.loss,
                                            device=self.device, data_kwargs=self.data_kwargs)
        return self._units

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

    def recheck(self, evidence: Evidence) -> Finding:
        if evidence.node is not None:
            return Finding(False, "the evidence names a node, but the subject is a single proof")
        if evidence.kind == CHECK:
            return self._recheck_integrity(str(evidence.check))
        return self._recheck_replay(evidence)

    def _recheck_replay(self, ev: Evidence) -> Finding:
        units = self._replayer()
        reader = units.reader
        start, stop = int(ev.start_step or 0), int(ev.stop_step or 0)
        if stop > reader.num_recorded_steps:
            return Finding(False, f"steps {start}-{stop} are outside the proof's {reader.num_recorded_steps} steps")
        if ev.unit == SEGMENT:
            steps = [int(s) for s in reader.checkpoint_steps]
            if ev.index is None or ev.index + 1 >= len(steps) or (steps[ev.index], steps[ev.index + 1]) != (start, stop):
                return Finding(False, f"segment {ev.index} does not span steps {start}-{stop} in this proof")
        if (committed_digest_after(reader, start), committed_digest_after(reader, stop)) != (ev.start_digest, ev.committed):
            return Finding(False, "the evidence names digests the proof does not commit for these steps")
        try:
            r = units.replay(start, stop)
        except EarlierMismatch as exc:
            return Finding(True, f"confirmed elsewhere: {exc}")
        self.replayed_steps += r.replayed_steps
        if r.reproduced:
            return Finding(False, f"steps {start}-{stop} replay to the committed digest {r.committed.hex()[:12]}…: "
                                  "the evidence is false", r.replayed)
        where = f"step {r.first_bad_step}" if r.first_bad_step is not None else f"steps {start}-{stop}"
        return Finding(True, f"{where} does not reproduce the committed state: committed {r.committed.hex()[:12]}…, "
                             f"replayed here {r.replayed.hex()[:12]}…", r.replayed)

    def _recheck_integrity(self, name: str) -> Finding:
        if self._integrity is None:
            from verifier.api import VerifyOptions, verify

            report = verify(self.proof, options=VerifyOptions(segments=0, top_updates=0, progress_check=False,
                                                              data=self.data, model=self.model, loss=self.loss,
                                                              device=self.device, mode="exact",
                                                              data_kwargs=self.data_kwargs))
            self._integrity = {c.name: c.passed for c in report.checks if c.name in RECHECKABLE_CHECKS}
        if self._integrity.get(name) is False:
            return Finding(True, f"the proof fails {name} here too")
        others = [n for n, passed in self._integrity.items() if passed is False]
        if others:
            return Finding(True, f"confirmed elsewhere: the proof fails {', '.join(others)} here")
        return Finding(False, f"{name} passes here: the evidence is false")
