"""Ownership disputes: which of several claimed proofs explains a set of published weights?

``pol ownership --weights W --claim A.pol.h5 --key A.pub --claim B.pol.h5 --key B.pub``

Each claim is judged in full (:func:`verifier.published.verify_loaded`: the whole proof under
the claimant's trusted key, plus ``W`` equal to its final checkpoint). Then:

* **lineage**: between two claims whose proofs verify, B *fine-tuned from* A when B's initial
  weights (checkpoint 0, model part) equal A's signed final weights;
* **timing**: plans carry a signed ``created_at``. A claim to ``W`` whose plan was signed after
  another claimant's final weights already existed (that claimant's ``finished_at``) is flagged:
  whoever started later could have started from the other's weights. ``finished_at`` is *not*
  signed (self-reported) and ``created_at`` is asserted by its own signer; neither is anchored
  unless a transparency log or timestamp authority vouches for it, so timing is evidence
  reported beside the verdict, never the verdict itself;
* **copies**: a trajectory is bound to its trainer (the run seed, and so the initial weights and
  the batch order, derive from the signer's key and the plan nonce), so states of one claim that
  appear in another claim at the same step (checkpoint or per-step state digests; any ``k``) are
  a copy: the claim whose proof verifies under its own key produced them, whatever the dates say.

Outcome: ``owned`` (exactly one claim is valid for W) or ``lineage`` (several valid claims form
one fine-tune chain) exit 0; ``no-valid-claim`` or ``conflict`` exit 1. A claim checked without a
trusted key is "self-asserted" and never counts as valid. Unreadable input raises
:class:`pol.errors.InputError` (exit 2).
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from pol.errors import InputError
from pol.hashing import weights_digest
from pol.keys import fingerprint
from pol.proof_file import ProofReader
from pol.state import model_weights
from pol.weights_io import WeightsFile, load_weights
from verifier.published import normalize_cast, verify_loaded
from verifier.report import SCHEMA_VERSION, Report

TIMING_CAVEAT = ("finish times (final.finished_at) are self-reported and not signed; plan times (created_at) are "
                 "signed but asserted by their own signer. Neither is anchored unless a transparency log or a "
                 "timestamp authority vouches for it, so timing is evidence, not proof.")

__all__ = ["Claim", "ClaimResult", "Ownership", "resolve_ownership", "TIMING_CAVEAT"]


@dataclass(frozen=True)
class Claim:
    proof: str
    key: str | None          # public key file or fingerprint; None: self-asserted
    model: str | None = None  # this claim's model code (module:callable), when not built in
    data: str | None = None   # this claim's data code


@dataclass
class ClaimResult:
    index: int
    claim: Claim
    report: Report
    signer_fingerprint: str
    plan_digest: str
    created_at: str
    finished_at: str
    final_weights_digest: str | None
    initial_weights_digest: str
    states_by_step: dict[int, bytes]      # committed state digests by step (per step when recorded)

    @property
    def weights_match(self) -> bool:
        return self.report.check("weights_match").passed is True

    @property
    def proof_verdict(self) -> str:
        rest = Report(self.report.subject, [c for c in self.report.checks if c.name != "weights_match"])
        return rest.verdict

    @property
    def verdict(self) -> str:
        pv = self.proof_verdict
        if pv == "verified":
            return "valid" if self.weights_match else "valid-proof-other-weights"
        return pv  # self-asserted | rejected | incomplete

    def label(self) -> str:
        return f"claim {self.index} ({os.path.basename(self.claim.proof)}, signer {self.signer_fingerprint[:12]}…)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "proof": self.claim.proof,
            "key": self.claim.key,
            "verdict": self.verdict,
            "proof_verdict": self.proof_verdict,
            "weights_match": self.weights_match,
            "signer_fingerprint": self.signer_fingerprint,
            "plan_digest": self.plan_digest,
            "created_at": self.created_at,
            "created_at_signed": True,
            "finished_at": self.finished_at,
            "finished_at_signed": False,
            "final_weights_digest": self.final_weights_digest,
            "initial_weights_digest": self.initial_weights_digest,
            "failed_checks": [c.name for c in self.report.failed],
            "report": self.report.to_dict(),
        }


@dataclass
class Ownership:
    weights: str
    weights_digest: str
    claims: list[ClaimResult]
    lineage: list[dict[str, Any]] = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: str = "no-valid-claim"
    explanation: str = ""
    owner: int | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict in ("owned", "lineage") else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "verdict": self.verdict,
            "explanation": self.explanation,
            "weights": self.weights,
            "weights_digest": self.weights_digest,
            "owner": self.owner,
            "checks": [{"name": f"claim[{c.index}]", "passed": c.verdict == "valid", "figure": c.verdict,
                        "detail": _claim_detail(c)} for c in self.claims],
            "claims": [c.to_dict() for c in self.claims],
            "lineage": self.lineage,
            "flags": self.flags,
            "notes": self.notes,
        }

    def render(self, stream: TextIO | None = None) -> None:
        from pol.terminal import printable as p

        out = stream or sys.stderr
        out.write(f"ownership of {p(self.weights)} (digest {self.weights_digest[:16]}…)\n")
        for c in self.claims:
            out.write(f"  claim {c.index}: {c.verdict.upper():<26} {p(c.claim.proof)}  signer {c.signer_fingerprint}\n")
            detail = _claim_detail(c)
            if detail:
                out.write(f"        {p(detail)}\n")
        for edge in self.lineage:
            out.write(f"  lineage: {p(edge['statement'])}\n")
        for flag in self.flags:
            out.write(f"  flag: {p(flag['statement'])}\n")
        for note in self.notes:
            out.write(f"  note: {p(note)}\n")
        out.write(f"verdict: {self.verdict.upper()} — {p(self.explanation)}\n")


def _claim_detail(c: ClaimResult) -> str:
    parts = []
    if c.report.failed:
        parts.append("failed: " + ", ".join(ch.name for ch in c.report.failed))
    if c.verdict == "self-asserted":
        parts.append("no trusted key given: the proof only vouches for itself, not an ownership claim")
    if not c.weights_match:
        parts.append("the weights are not this proof's final checkpoint")
    return "; ".join(parts)


def _time(text: str) -> _dt.datetime | None:
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def _states_by_step(reader: ProofReader) -> dict[int, bytes]:
    if reader.step_state_digests is not None:
        return dict(enumerate(reader.step_state_digests))
    return {int(t): d for t, d in zip(reader.checkpoint_steps, reader.state_digests)}


def _judge(index: int, wf: WeightsFile, claim: Claim, options: Any, cast: str | None) -> ClaimResult:
    from dataclasses import replace

    if options is not None and (claim.model or claim.data):
        options = replace(options, model=claim.model or options.model, data=claim.data or options.data)
    try:
        with ProofReader(claim.proof, model_spec=claim.model or getattr(options, "model", None)) as reader:
            final = reader.final
            meta = dict(
                signer_fingerprint=fingerprint(reader.signer_public_key),
                plan_digest=reader.plan_digest.hex(),
                created_at=reader.plan.created_at,
                finished_at=(final or {}).get("finished_at", ""),
                final_weights_digest=final["final_weights_digest"].hex() if final else None,
                initial_weights_digest=weights_digest(model_weights(reader.checkpoint_state(0))).hex()
                if reader.has_checkpoint(0) else "",
                states_by_step=_states_by_step(reader),
            )
        report = verify_loaded(wf, claim.proof, public_key=claim.key, options=options, allow_cast=cast)
    except InputError as exc:
        raise type(exc)(f"claim {index} ({claim.proof}): {exc}") from None
    return ClaimResult(index, claim, report, **meta)


def resolve_ownership(weights: str | os.PathLike[str], claims: list[Claim], *, options: Any = None,
                      allow_cast: str | None = None, allow_pickle: bool = False) -> Ownership:
    """Judge every claim against ``weights`` and decide who (if anyone) they belong to."""
    if not claims:
        raise InputError("give at least one --claim PROOF --key KEY pair")
    cast = normalize_cast(allow_cast)
    wf = load_weights(weights, allow_pickle=allow_pickle)
    results = [_judge(i, wf, c, options, cast) for i, c in enumerate(claims)]
    own = Ownership(str(weights), wf.digest().hex(), results)
    own.notes.append(TIMING_CAVEAT)

    verified = [r for r in results if r.proof_verdict == "verified"]
    for child in verified:
        for parent in verified:
            if parent is child or not parent.final_weights_digest:
                continue
            if child.initial_weights_digest == parent.final_weights_digest:
                statement = (f"{child.label()} fine-tuned from {parent.label()}: its initial weights equal the "
                             f"other's signed final weights ({parent.final_weights_digest[:16]}…)")
                edge = {"child": child.index, "parent": parent.index, "relation": "fine-tuned-from",
                        "evidence": "checkpoint 0 (model part) equals the parent's signed final weights",
                        "statement": statement}
                ct, pt = _time(child.created_at), _time(parent.finished_at)
                if ct and pt and ct < pt:
                    edge["timing"] = "inconsistent: the child's plan was signed before the parent's self-reported finish"
                    own.flags.append({"claim": child.index, "kind": "lineage-timing",
                                      "statement": f"{child.label()} says it started from {parent.label()}'s final "
                                                   "weights but its plan was signed before that run reports finishing"})
                elif ct and pt:
                    edge["timing"] = "consistent: the child's plan was signed after the parent's self-reported finish"
                own.lineage.append(edge)

    claimants = [r for r in results if r.weights_match and r.verdict == "valid"]
    for late in claimants:
        for early in claimants:
            if late is early:
                continue
            lt, et = _time(late.created_at), _time(early.finished_at)
            if lt and et and lt > et:
                own.flags.append({
                    "claim": late.index, "kind": "plan-after-weights", "other": early.index,
                    "statement": (f"{late.label()} signed its plan at {late.created_at}, after {early.label()} "
                                  f"reports its final weights existed ({early.finished_at}, self-reported)"),
                })
    for i, a in enumerate(results):
        for b in results[i + 1:]:
            shared = sorted(t for t, d in a.states_by_step.items() if t > 0 and b.states_by_step.get(t) == d)
            if not shared:
                continue
            origin = _origin(a, b)
            copier = b if origin is a else a if origin is b else None
            statement = (f"{a.label()} and {b.label()} hold the same training state at {len(shared)} step(s) "
                         f"(steps {shared[0]}..{shared[-1]}): one trajectory claimed twice")
            if origin is not None and copier is not None:
                statement += (f"; {origin.label()} produced it (its proof verifies, and its run seed, initial weights "
                              f"and batch order are bound to its key), {copier.label()} copied it, whatever the dates say")
            own.flags.append({"claim": copier.index if copier else b.index, "kind": "copy",
                              "other": origin.index if origin else a.index, "shared_steps": len(shared),
                              "first_shared_step": shared[0], "last_shared_step": shared[-1],
                              "origin": origin.index if origin else None, "statement": statement})

    _decide(own)
    return own


def _origin(a: ClaimResult, b: ClaimResult) -> ClaimResult | None:
    """Of two claims sharing states, the one whose proof verifies (its key-bound seed explains them)."""
    va, vb = a.proof_verdict == "verified", b.proof_verdict == "verified"
    if va != vb:
        return a if va else b
    return None


def _decide(own: Ownership) -> None:
    valid = [r for r in own.claims if r.verdict == "valid"]
    parents = {e["child"]: e["parent"] for e in own.lineage}
    ancestry = ""
    if len(valid) == 1:
        owner = valid[0]
        own.verdict, own.owner = "owned", owner.index
        chain, seen, cur = [], {owner.index}, owner.index
        while cur in parents and parents[cur] not in seen:
            cur = parents[cur]
            seen.add(cur)
            chain.append(cur)
        if chain:
            ancestry = "; it fine-tuned " + " which fine-tuned ".join(own.claims[i].label() for i in chain)
        own.explanation = f"the weights are the final checkpoint of {owner.label()}, a valid proof{ancestry}"
        return
    if not valid:
        own.verdict = "no-valid-claim"
        selfish = [r for r in own.claims if r.verdict == "self-asserted" and r.weights_match]
        own.explanation = "no claim is both a verified proof under its trusted key and ending in these weights"
        if selfish:
            own.explanation += " (self-asserted claims were given without a trusted key and do not count)"
        return
    ids = {r.index for r in valid}
    # a consistent lineage: the valid claims form one chain of fine-tunes
    roots = [i for i in ids if parents.get(i) not in ids]
    if len(roots) == 1:
        order, cur = [roots[0]], roots[0]
        children = {p: c for c, p in parents.items() if c in ids and p in ids}
        while cur in children and children[cur] not in order:
            cur = children[cur]
            order.append(cur)
        if len(order) == len(ids):
            own.verdict, own.owner = "lineage", order[-1]
            own.explanation = ("several claims end in these weights and form one fine-tune chain: "
                               + " -> ".join(own.claims[i].label() for i in order))
            return
    own.verdict = "conflict"
    own.explanation = (f"{len(valid)} valid claims end in these weights and no lineage relates them: "
                       + ", ".join(r.label() for r in valid) + "; see flags")
