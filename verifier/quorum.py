"""Tallying votes: a Byzantine-tolerant quorum of verifiers (``pol quorum certify``).

``n`` trusted verifiers, at most ``f`` of them Byzantine, ``n >= 3f + 1``. A subject is

* **rejected** when any counted vote carries rejection evidence that the tally re-checks and
  confirms (:mod:`verifier.evidence`): replaying the one step or segment it names shows the
  committed digest is not reproduced. One checked rejection overrides any number of acceptances,
  because it is a fact the tally computed itself, not a vote;
* **accepted** when at least ``ceil((n + f + 1) / 2)`` (= ``2f + 1`` for ``n = 3f + 1``) valid,
  distinct, trusted verifiers vote ``verified`` and no rejection is confirmed;
* **undecided** otherwise (too few acceptances).

Ignored, each with its reason: unparseable votes, votes by keys not in the verifier list,
votes whose signature does not verify, votes on another subject (or another node), second
copies of a verifier's vote, all votes of a verifier that signed conflicting verdicts, and
rejections whose evidence the re-check refutes (that verifier lied). A rejection without
evidence counts neither way.

The report states the combined detection probability of the segments the accepting verifiers
replayed: with ``s_i`` segments drawn uniformly (independently) by verifier ``i`` out of ``n``,
a forged fraction ``q`` of segments escapes all of them with probability ``prod_i C(n-m, s_i) /
C(n, s_i)`` (``m = ceil(q n)``). ``claimed`` multiplies over every accepting vote (each verifier's
own word about what it replayed); ``guaranteed`` drops the ``f`` accepting votes with the largest
draws, since up to ``f`` of them may lie about having replayed anything.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pol.errors import InputError, KeyFileError
from pol.keys import fingerprint, load_verify_key
from verifier.evidence import Evidence, Finding, Rechecker
from verifier.report import Check
from verifier.sampling import detection_probability
from verifier.subject import Subject
from verifier.untrusted_json import DocumentError
from verifier.vote import SignedVote, read_vote, signature_valid

SCHEMA_VERSION = 1
FRACTIONS = (0.1, 0.5)
MAX_VOTE_FILES = 10_000


def threshold(n: int, f: int) -> int:
    """Acceptances needed: ``ceil((n + f + 1) / 2)``, i.e. ``2f + 1`` when ``n = 3f + 1``."""
    return (n + f + 2) // 2


def read_verifiers(path: str | os.PathLike[str]) -> list[bytes]:
    """Trusted verifier keys: one per line, a 64-hex-digit Ed25519 public key or a path to a
    ``pol keygen`` ``.pub`` file (relative to the list's folder); ``#`` starts a comment."""
    p = Path(path)
    try:
        lines = p.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the verifier list {p}: {exc}") from None
    keys: list[bytes] = []
    for number, line in enumerate(lines, 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if len(entry) == 64 and all(c in "0123456789abcdefABCDEF" for c in entry):
            key = bytes.fromhex(entry)
        else:
            target = Path(entry) if Path(entry).is_absolute() else p.parent / entry
            try:
                key = bytes(load_verify_key(target))
            except KeyFileError as exc:
                raise InputError(f"{p}, line {number}: {exc}") from None
        if key in keys:
            raise InputError(f"{p}, line {number}: verifier {fingerprint(key)} is listed twice")
        keys.append(key)
    if not keys:
        raise InputError(f"{p} lists no verifier")
    return keys


def load_votes(folder: str | os.PathLike[str]) -> tuple[list[SignedVote], list[tuple[str, str]]]:
    """Every ``*.json`` file in ``folder`` parsed as a vote: (votes, [(file, why it is unreadable)])."""
    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"{d} is not a folder of votes")
    files = sorted(d.glob("*.json"))
    if len(files) > MAX_VOTE_FILES:
        raise InputError(f"{d} holds more than {MAX_VOTE_FILES} vote files")
    votes, bad = [], []
    for path in files:
        try:
            votes.append(read_vote(path))
        except DocumentError as exc:
            bad.append((path.name, f"malformed: {exc}"))
    return votes, bad


@dataclass
class Ignored:
    source: str
    verifier: str | None
    reason: str


@dataclass
class QuorumResult:
    subject: Subject
    n: int
    f: int
    threshold: int
    accepting: list[str] = field(default_factory=list)          # verifier fingerprints
    confirmed_rejections: list[dict[str, Any]] = field(default_factory=list)
    unsupported_rejections: list[str] = field(default_factory=list)
    abstaining: list[str] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    detection: dict[str, Any] = field(default_factory=dict)
    replayed_steps: int = 0

    @property
    def decision(self) -> str:
        if self.confirmed_rejections:
            return "rejected"
        return "accepted" if len(self.accepting) >= self.threshold else "undecided"

    @property
    def exit_code(self) -> int:
        return 0 if self.decision == "accepted" else 1

    def checks(self) -> list[Check]:
        false_evidence = sum(1 for i in self.ignored if i.reason.startswith("false evidence"))
        return [
            Check("verifiers", True, f"n={self.n}, f={self.f}, {self.threshold} acceptances needed",
                  "n >= 3f + 1 trusted verifiers"),
            Check("rejection_evidence", not self.confirmed_rejections,
                  f"{len(self.confirmed_rejections)} confirmed rejection(s); {false_evidence} vote(s) with false "
                  "evidence discarded",
                  "; ".join(r["finding"] for r in self.confirmed_rejections[:3])),
            Check("quorum", len(self.accepting) >= self.threshold,
                  f"{len(self.accepting)}/{self.threshold} valid distinct acceptances",
                  "" if len(self.accepting) >= self.threshold else "not enough valid acceptances"),
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "verdict": self.decision,
            "subject": self.subject.digest.hex(),
            "subject_kind": self.subject.kind,
            "node": self.subject.node,
            "checks": [c.__dict__ for c in self.checks()],
            "n": self.n, "f": self.f, "threshold": self.threshold,
            "accepting": self.accepting,
            "confirmed_rejections": self.confirmed_rejections,
            "unsupported_rejections": self.unsupported_rejections,
            "abstaining": self.abstaining,
            "ignored": [i.__dict__ for i in self.ignored],
            "evidence_findings": self.findings,
            "detection_probability": self.detection,
            "recheck_replayed_steps": self.replayed_steps,
        }


def tally(subject: Subject, votes: list[SignedVote], verifiers: list[bytes], f: int,
          rechecker: Rechecker | None = None, unreadable: list[tuple[str, str]] | None = None) -> QuorumResult:
    """Decide ``subject`` from ``votes`` (see the module docstring). ``rechecker`` re-checks
    rejection evidence; without one, a vote carrying evidence cannot be judged (InputError)."""
    n = len(verifiers)
    if f < 0 or n < 3 * f + 1:
        raise InputError(f"{n} verifier(s) cannot tolerate f={f} Byzantine ones: n >= 3f + 1 = {3 * f + 1} are needed")
    result = QuorumResult(subject, n, f, threshold(n, f))
    result.ignored += [Ignored(src, None, why) for src, why in unreadable or []]
    trusted = set(verifiers)
    by_verifier: dict[bytes, list[SignedVote]] = defaultdict(list)
    for sv in votes:
        v = sv.vote
        who = fingerprint(v.verifier)
        if v.verifier not in trusted:
            result.ignored.append(Ignored(sv.source, who, "unknown verifier: its key is not in the verifier list"))
        elif not signature_valid(sv):
            result.ignored.append(Ignored(sv.source, who, "forged: the signature does not verify under the key it names"))
        elif v.subject != subject:
            result.ignored.append(Ignored(sv.source, who, f"a vote on another subject ({v.subject.describe()})"))
        else:
            by_verifier[v.verifier].append(sv)
    counted: list[SignedVote] = []
    for key, group in by_verifier.items():
        if len({sv.vote.verdict for sv in group}) > 1:
            result.ignored += [Ignored(sv.source, fingerprint(key), "equivocation: this verifier signed conflicting "
                                       "verdicts on the subject; none of its votes count") for sv in group]
            continue
        group = sorted(group, key=lambda sv: (sv.vote.issued_at, sv.signature))
        counted.append(group[0])
        result.ignored += [Ignored(sv.source, fingerprint(key), f"duplicate of {group[0].source}") for sv in group[1:]]
    cache: dict[tuple[Any, ...], Finding] = {}
    accepted_votes = []
    for sv in counted:
        v, who = sv.vote, fingerprint(sv.vote.verifier)
        if v.verdict == "verified":
            result.accepting.append(who)
            accepted_votes.append(v)
        elif v.verdict == "rejected" and not v.evidence:
            result.unsupported_rejections.append(who)
        elif v.verdict == "rejected":
            confirmed = _judge_evidence(v.evidence, rechecker, cache, result, sv.source)
            if confirmed is not None:
                result.confirmed_rejections.append({"verifier": who, "source": sv.source,
                                                    "evidence": confirmed[0].describe(), "finding": confirmed[1].detail})
            else:
                result.ignored.append(Ignored(sv.source, who, "false evidence: re-checking refuted every piece of "
                                                              "evidence this rejection carries"))
        else:
            result.abstaining.append(who)
    result.detection = combined_detection(accepted_votes, f)
    if rechecker is not None:
        result.replayed_steps = int(getattr(rechecker, "replayed_steps", 0))
    return result


def _judge_evidence(evidence: tuple[Evidence, ...], rechecker: Rechecker | None,
                    cache: dict[tuple[Any, ...], Finding], result: QuorumResult,
                    source: str) -> tuple[Evidence, Finding] | None:
    if rechecker is None:
        raise InputError(f"{source} rejects with evidence; re-checking it needs the subject itself (--proof)")
    for ev in evidence:
        key = ev.key()
        if key not in cache:
            cache[key] = rechecker.recheck(ev)
            result.findings.append({"evidence": ev.describe(), "confirmed": cache[key].confirmed,
                                    "detail": cache[key].detail})
        if cache[key].confirmed:
            return ev, cache[key]
    return None


def combined_detection(votes: list[Any], f: int) -> dict[str, Any]:
    """Detection probability of the union of the accepting verifiers' independent uniform draws."""
    if not votes:
        return {"note": "no accepting vote: nothing was certified"}
    totals = [v.segments_total for v in votes]
    n = max(set(totals), key=lambda t: (totals.count(t), -t))  # a vote naming another count draws nothing here
    draws = sorted((v.segments_uniform if v.segments_total == n else 0 for v in votes), reverse=True)
    union = sorted(set().union(*(set(v.segments) for v in votes if v.segments_total == n)))
    if n <= 0:
        return {"note": "the accepting votes name no segment"}

    def escape(sizes: list[int], q: float | None) -> float:
        miss = 1.0
        for s in sizes:
            miss *= (1.0 - s / n) if q is None else (1.0 - detection_probability(n, s, q))
        return miss

    honest = draws[f:] if len(draws) > f else []
    out: dict[str, Any] = {
        "unit": "segment", "segments_total": n, "union_of_segments_replayed": len(union),
        "uniform_draws": draws,
        "claimed": {"one_forged_segment": round(1 - escape(draws, None), 4),
                    **{f"f={q}": round(1 - escape(draws, q), 4) for q in FRACTIONS}},
        "guaranteed": {"one_forged_segment": round(1 - escape(honest, None), 4),
                       **{f"f={q}": round(1 - escape(honest, q), 4) for q in FRACTIONS}},
        "rule": "1 - prod_i C(n-m, s_i)/C(n, s_i) over independent uniform draws; 'guaranteed' drops the f largest "
                "draws (up to f accepting verifiers may lie about what they replayed)",
    }
    if any(v.steps for v in votes):
        total = max(v.steps_total for v in votes)
        step_draws = sorted((len(v.steps) for v in votes), reverse=True)[f:]
        out["steps"] = {"steps_total": total, "guaranteed_f=0.01": round(
            1 - math.prod(1 - detection_probability(total, s, 0.01) for s in step_draws), 4)}
    return out
