"""Signed verifier votes (``pol verify PROOF --key K --vote V.json --verifier-key v.key``).

A vote is one JSON file::

    {"vote": {...body...}, "signature": "<128 hex>"}

The signature is the verifier's Ed25519 signature over ``"pol-vote-sig-v1" || canonical_json(body)``
(``pol.hashing.canonical_json``: sorted keys, no whitespace, ASCII). The body:

| field | meaning |
|---|---|
| ``schema`` | ``"pol-vote-v1"`` |
| ``subject`` | hex subject digest (:mod:`verifier.subject`), ``subject_kind`` ``"proof"`` or ``"pipeline-node"`` |
| ``node`` | the pipeline node judged, or ``null`` for a single proof |
| ``verifier`` | hex Ed25519 public key of the voter |
| ``verdict`` | the voter's report verdict: ``verified``, ``rejected``, ``self-asserted``, ``incomplete`` |
| ``mode`` | ``exact`` or ``tolerance`` |
| ``segments_total``, ``segments``, ``segments_uniform`` | segments in the proof, segments replayed, how many of them were drawn uniformly with the voter's randomness |
| ``steps_total``, ``steps`` | steps in the proof, single steps replayed |
| ``verifier_seed`` | the seed the voter drew its segments with (so the draw can be recomputed) |
| ``checks`` | ``[{"name", "passed"}]`` of the voter's report |
| ``evidence`` | for a rejection: :class:`verifier.evidence.Evidence` items (a replay unit with its digests, or a re-runnable check) |
| ``issued_at`` | ISO-8601 UTC |

Votes are untrusted input to whoever tallies them: :func:`read_vote` parses strictly (size
cap, duplicate keys, exact types) and :func:`check_signature` verifies the signature under the
key the vote names; whether that key is trusted is the tally's business (:mod:`verifier.quorum`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from pol.errors import BadSignatureError
from pol.hashing import canonical_json
from pol.keys import sign, verify_signature
from pol.plan import utc_now
from verifier import untrusted_json as uj
from verifier.evidence import Evidence
from verifier.report import Report
from verifier.subject import SUBJECT_KINDS, Subject

VOTE_SCHEMA = "pol-vote-v1"
VOTE_DOMAIN = b"pol-vote-sig-v1"
MAX_VOTE_BYTES = 1 << 20
MAX_EVIDENCE = 16
VERDICTS = ("verified", "rejected", "self-asserted", "incomplete")
_BODY_FIELDS = {"schema", "subject", "subject_kind", "node", "verifier", "verdict", "mode", "segments_total",
                "segments", "segments_uniform", "steps_total", "steps", "verifier_seed", "checks", "evidence",
                "issued_at"}


@dataclass(frozen=True)
class Vote:
    subject: Subject
    verifier: bytes
    verdict: str
    mode: str
    segments_total: int
    segments: tuple[int, ...]
    segments_uniform: int
    steps_total: int
    steps: tuple[int, ...]
    verifier_seed: int | None
    checks: tuple[tuple[str, bool | None], ...]
    evidence: tuple[Evidence, ...] = ()
    issued_at: str = field(default_factory=utc_now)

    def body(self) -> dict[str, Any]:
        return {"schema": VOTE_SCHEMA, "subject": self.subject.digest.hex(), "subject_kind": self.subject.kind,
                "node": self.subject.node, "verifier": self.verifier.hex(), "verdict": self.verdict,
                "mode": self.mode, "segments_total": self.segments_total, "segments": list(self.segments),
                "segments_uniform": self.segments_uniform, "steps_total": self.steps_total,
                "steps": list(self.steps), "verifier_seed": self.verifier_seed,
                "checks": [{"name": n, "passed": p} for n, p in self.checks],
                "evidence": [e.to_json() for e in self.evidence], "issued_at": self.issued_at}

    def signed_bytes(self) -> bytes:
        return canonical_json(self.body())


@dataclass(frozen=True)
class SignedVote:
    vote: Vote
    signature: bytes
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"vote": self.vote.body(), "signature": self.signature.hex()}


def sign_vote(vote: Vote, key: SigningKey) -> SignedVote:
    if bytes(key.verify_key) != vote.verifier:
        raise ValueError("the vote names another verifier key than the one signing it")
    return SignedVote(vote, sign(key, VOTE_DOMAIN, vote.signed_bytes()))


def check_signature(signed: SignedVote) -> None:
    """Raise :class:`BadSignatureError` unless the vote is signed by the key it names."""
    verify_signature(signed.vote.verifier, VOTE_DOMAIN, signed.vote.signed_bytes(), signed.signature)


def signature_valid(signed: SignedVote) -> bool:
    try:
        check_signature(signed)
    except BadSignatureError:
        return False
    return True


def write_vote(signed: SignedVote, path: str | os.PathLike[str]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(signed.to_json(), indent=1, sort_keys=True) + "\n")


def parse_vote(doc: dict[str, Any], what: str) -> SignedVote:
    uj.no_other_fields(doc, {"vote", "signature"}, what)
    body = uj.field(doc, "vote", dict, what)
    signature = uj.hex_field(doc, "signature", 64, what)
    uj.no_other_fields(body, _BODY_FIELDS, what)
    if uj.field(body, "schema", str, what) != VOTE_SCHEMA:
        raise uj.DocumentError(f"{what}: not a {VOTE_SCHEMA} vote")
    kind = uj.field(body, "subject_kind", str, what)
    node = uj.field(body, "node", int, what, optional=True)
    if kind not in SUBJECT_KINDS:
        raise uj.DocumentError(f"{what}: unknown subject kind {kind[:40]!r}")
    try:
        subject = Subject(kind, uj.hex_field(body, "subject", 32, what) or b"", node)
    except ValueError as exc:
        raise uj.DocumentError(f"{what}: {exc}") from None
    verdict = uj.field(body, "verdict", str, what)
    if verdict not in VERDICTS:
        raise uj.DocumentError(f"{what}: unknown verdict {verdict[:40]!r}")
    mode = uj.field(body, "mode", str, what)
    if mode not in ("exact", "tolerance"):
        raise uj.DocumentError(f"{what}: unknown mode {mode[:40]!r}")
    checks = []
    for c in uj.field(body, "checks", list, what)[:256]:
        if not isinstance(c, dict):
            raise uj.DocumentError(f"{what}: a check must be an object")
        uj.no_other_fields(c, {"name", "passed"}, what)
        checks.append((uj.field(c, "name", str, what)[:80], uj.field(c, "passed", bool, what, optional=True)))
    raw_evidence = uj.field(body, "evidence", list, what)
    if len(raw_evidence) > MAX_EVIDENCE:
        raise uj.DocumentError(f"{what}: more than {MAX_EVIDENCE} pieces of evidence")
    evidence = tuple(Evidence.from_json(e, f"{what} evidence") for e in raw_evidence)
    counts = [uj.field(body, k, int, what) for k in ("segments_total", "segments_uniform", "steps_total")]
    segments, steps = uj.int_list(body, "segments", what), uj.int_list(body, "steps", what)
    if min(counts) < 0 or counts[1] > len(segments) or any(s >= counts[0] for s in segments) or \
            any(t >= counts[2] for t in steps) or len(set(segments)) != len(segments):
        raise uj.DocumentError(f"{what}: inconsistent segment or step counts")
    vote = Vote(subject, uj.hex_field(body, "verifier", 32, what) or b"", verdict, mode, counts[0],
                tuple(segments), counts[1], counts[2], tuple(steps),
                uj.field(body, "verifier_seed", int, what, optional=True), tuple(checks), evidence,
                uj.field(body, "issued_at", str, what)[:64])
    return SignedVote(vote, signature or b"", what)


def read_vote(path: str | os.PathLike[str]) -> SignedVote:
    """Parse a vote file strictly (raises :class:`verifier.untrusted_json.DocumentError`)."""
    return parse_vote(uj.load(path, MAX_VOTE_BYTES, "vote"), str(path))


# -- from a verification report -------------------------------------------------------------------
def vote_from_report(report: Report, subject: Subject, verifier_key: bytes,
                     evidence: tuple[Evidence, ...] = ()) -> Vote:
    """The vote a verifier casts after ``report`` (its own verification of ``subject``)."""
    info = report.info
    replayed = [int(s) for s in info.get("replayed_segments", [])]
    segments_total = int(info.get("segments_total", 0))
    steps = info.get("challenged_steps", [])
    return Vote(subject, verifier_key, report.verdict, str(info.get("mode", "exact")), segments_total,
                tuple(sorted(set(replayed))), min(int(info.get("segments_uniform", 0)), len(set(replayed))),
                int(info.get("steps_total", 0)), tuple(sorted(set(int(t) for t in steps))),
                info.get("verifier_seed"), tuple((c.name, c.passed) for c in report.checks), evidence)


def rejection_evidence(reader: Any, report: Report, *, data: str | None = None, model: str | None = None,
                       loss: str | None = None, device: str = "auto", data_kwargs: dict | None = None,
                       limit: int = 2) -> tuple[Evidence, ...]:
    """Evidence for a rejected report: failed integrity checks anyone re-runs, and up to ``limit``
    failed replay units localised to their first differing step (exact mode; replays them again)."""
    from verifier.evidence import CHECK, RECHECKABLE_CHECKS, localize

    if report.verdict != "rejected":
        return ()
    out = [Evidence(CHECK, check=c.name, detail=c.detail[:500]) for c in report.checks
           if c.passed is False and c.name in RECHECKABLE_CHECKS]
    failures = report.info.get("replay_failures") or []
    if failures and report.info.get("mode") == "exact":
        from verifier.unit_replay import ExactUnitReplayer

        units = ExactUnitReplayer(reader, data=data, model=model, loss=loss, device=device, data_kwargs=data_kwargs)
        for f in failures[:limit]:
            ev = localize(units, int(f["start_step"]), int(f["stop_step"]), str(f.get("detail", "")))
            if ev is not None:
                out.append(ev)
    return tuple(out[:MAX_EVIDENCE])


def cast_vote(proof: str | os.PathLike[str], report: Report, verifier_key: SigningKey, out: str | os.PathLike[str],
              **replay: Any) -> SignedVote:
    """Sign and write the vote for ``report`` (this verifier's verification of ``proof``)."""
    from pol.proof_file import ProofReader
    from verifier.subject import proof_subject

    with ProofReader(proof, model_spec=replay.get("model")) as reader:
        subject = proof_subject(reader)
        evidence = rejection_evidence(reader, report, **replay)
    signed = sign_vote(vote_from_report(report, subject, bytes(verifier_key.verify_key), evidence), verifier_key)
    write_vote(signed, out)
    return SignedVote(signed.vote, signed.signature, str(out))
