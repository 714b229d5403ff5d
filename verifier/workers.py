"""Third-party verification of a coordinator's log (``pol workers verify LOG``; ``pol verify LOG``).

Re-checks, from the log and the data the verifier holds: the signatures and the hash chain,
the data commitment and the shards, the initial model, every stored round proof against the
coordinator's verdict (the same gate, :mod:`pol.workers.admission`), the aggregation
arithmetic of every round (bitwise, :mod:`pol.workers.aggregate`) and the final weights, the
exclusion policy, and replays a sample of accepted updates (chosen with the verifier's own
randomness) plus a sample of the updates rejected for failing replay (a coordinator must not
frame an honest worker). See docs/WORKERS.md.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


from pol.datacommit import sample_digests
from pol.envinfo import environment_fingerprint, exact_mismatches, pick_device
from pol.errors import BadSignatureError
from pol.hashing import weights_digest
from pol.keys import TrustedKey, fingerprint, resolve_trusted_key, verify_signature
from pol.merkle import merkle_root
from pol.tasks import load_data, resolve_spec, seeded_weights
from pol.workers.admission import BASELINE_CHECKS, CHECKS, Gate
from pol.workers.aggregate import aggregate
from pol.workers.local import LocalTrainer
from pol.workers.log import (
    FINAL_DOMAIN,
    FINAL_RECORD_FORMAT,
    ROUND_DOMAIN,
    ROUND_RECORD_FORMAT,
    CoordinatorLog,
    chain_link,
    read_log,
    submission_digest,
)
from pol.workers.messages import WorkersFormatError
from pol.workers.plan import PLAN_DOMAIN, FederatedPlan
from pol.workers.shards import assign_shards, shard_root
from pol.smallfiles import parse_json
from verifier.report import Report

STATUSES = ("accepted", "rejected", "missing", "excluded")


@dataclass(frozen=True)
class WorkersVerifyOptions:
    replays: int | None = None     # accepted updates to replay (None: 10%, at least 4)
    seed: int | None = None        # verifier's randomness (None: OS entropy)
    device: str = "auto"
    data: str | None = None        # module:callable for a custom task's data
    model: str | None = None       # module:callable for a custom model



def _final_record(raw: bytes | None) -> dict[str, Any]:
    """The coordinator's final record; {} when absent or not a JSON object (the caller judges it)."""
    if not raw:
        return {}
    try:
        doc = parse_json(raw, "final record", ValueError)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}

def default_replays(accepted: int) -> int:
    return min(accepted, max(4, math.ceil(0.10 * accepted)))


def _records(log: CoordinatorLog) -> list[dict[str, Any]]:
    records = []
    for i, rnd in enumerate(log.rounds):
        try:
            rec = parse_json(rnd.record_bytes, "round record", ValueError)
        except ValueError:
            raise WorkersFormatError(f"round {i}: record is not JSON") from None
        if not isinstance(rec, dict) or rec.get("format") != ROUND_RECORD_FORMAT:
            raise WorkersFormatError(f"round {i}: not a {ROUND_RECORD_FORMAT} record")
        subs, agg = rec.get("submissions"), rec.get("aggregation")
        if not isinstance(subs, list) or not all(isinstance(s, dict) and s.get("status") in STATUSES
                                                 and isinstance(s.get("worker"), int) for s in subs):
            raise WorkersFormatError(f"round {i}: malformed submissions list")
        if not isinstance(agg, dict) or not isinstance(agg.get("inputs"), list):
            raise WorkersFormatError(f"round {i}: malformed aggregation entry")
        for name in ("global_in", "global_out", "prev"):
            if not isinstance(rec.get(name), str):
                raise WorkersFormatError(f"round {i}: field {name!r} must be a hex string")
        records.append(rec)
    return records


class _Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, msg: str) -> None:
        self.items.append(msg)

    def check(self, report: Report, name: str, figure: str) -> None:
        report.add(name, not self.items, figure if not self.items else f"{len(self.items)} problem(s)",
                   "; ".join(self.items[:3]))


def verify_log(path: str | os.PathLike[str], *, public_key: str | TrustedKey | None = None,
               options: WorkersVerifyOptions | None = None,
               progress: Callable[[str, int], Callable[[int], None]] | None = None) -> Report:
    """Verify a coordinator log; raises :class:`pol.errors.InputError` when it cannot be judged."""
    opts = options or WorkersVerifyOptions()
    log = read_log(path)
    plan = FederatedPlan.from_bytes(log.plan_bytes)
    records = _records(log)
    report = Report(str(path))
    report.info.update({"kind": "pol-workers-log-v1", "rounds": len(records), "workers": len(plan.workers),
                        "aggregation": plan.aggregation["rule"]})
    _signatures(report, plan, log, records, public_key)
    data = load_data(resolve_spec(plan.data["spec"], opts.data, "data"), plan.data.get("kwargs") or {}).train
    _data_commitment(report, plan, data)
    weights = seeded_weights(resolve_spec(plan.model["spec"], opts.model, "model"), plan.model["kwargs"], plan.seed)
    report.add("initialization", weights_digest(weights).hex() == plan.initial_weights_digest,
               "initial global model recomputed from the seed", "the plan's initial weights digest differs")
    device = pick_device(opts.device if opts.device != "auto" else plan.environment.get("device_type", "cpu"))
    _set_threads(plan, device)
    mismatches = exact_mismatches(plan.environment, environment_fingerprint(device))
    trainer = LocalTrainer(plan, data, device, opts.model) if not mismatches else None
    gate = Gate(plan, trainer)
    accepted = [(r, s["worker"]) for r, rec in enumerate(records) for s in rec["submissions"]
                if s["status"] == "accepted"]
    replay_rejected = [(r, s["worker"]) for r, rec in enumerate(records) for s in rec["submissions"]
                       if s["status"] == "rejected" and s.get("check") == "replay"]
    rng = random.Random(opts.seed if opts.seed is not None else int.from_bytes(os.urandom(8), "little"))
    count = default_replays(len(accepted)) if opts.replays is None else min(opts.replays, len(accepted))
    chosen = set(rng.sample(accepted, count))
    chosen_rejected = set(rng.sample(replay_rejected, min(len(replay_rejected), max(count, 1))))
    verdicts, agg, policy = _Failures(), _Failures(), _Failures()
    replay_fail, frame_fail = _Failures(), _Failures()
    advance = progress("replaying", len(chosen) + len(chosen_rejected)) if progress and trainer else (lambda n: None)
    banned: set[int] = set()
    ban = plan.verification["exclusion"] == "ban"
    for r, rec in enumerate(records):
        digest = weights_digest(weights)
        if rec["global_in"] != digest.hex():
            agg.add(f"round {r}: the logged global model is not the one the previous rounds compute")
        by_worker = {s["worker"]: s for s in rec["submissions"]}
        if sorted(by_worker) != plan.worker_ids or len(by_worker) != len(rec["submissions"]):
            verdicts.add(f"round {r}: the record does not list every worker of the plan once")
            continue
        inputs = []
        verified = plan.aggregation["rule"] == "replay_verified"
        for w, s in sorted(by_worker.items()):
            raw = log.rounds[r].submissions.get(w)
            if s["status"] in ("missing", "excluded"):
                if raw is not None:
                    verdicts.add(f"round {r} worker {w}: a stored submission is marked {s['status']}")
                if s["status"] == "excluded" and w not in banned and not _lost_before(records, r, w):
                    policy.add(f"round {r}: worker {w} was excluded without a ban or a loss")
                continue
            if w in banned:
                policy.add(f"round {r}: banned worker {w} took part")
            if s["status"] == "rejected" and ban:
                banned.add(w)
            if raw is None or submission_digest(raw) != s.get("digest"):
                verdicts.add(f"round {r} worker {w}: stored submission missing or not the one the record names")
                continue
            again = gate.judge(raw, w, r, weights, digest, checks=CHECKS if verified else BASELINE_CHECKS,
                               replay=False)
            if s["status"] == "accepted":
                if not again.accepted:
                    verdicts.add(f"round {r} worker {w}: accepted, but fails {again.check}: {again.reason}")
                    continue
                if verified and plan.replay_fraction >= 1.0 and not s.get("replayed"):
                    policy.add(f"round {r} worker {w}: accepted without the replay the policy requires")
                inputs.append((w, again.proof.tensors))
                if (r, w) in chosen and trainer is not None:
                    replayed = gate.judge(raw, w, r, weights, digest, checks=CHECKS, replay=True)
                    if not replayed.accepted:
                        replay_fail.add(f"round {r} worker {w}: {replayed.reason}")
                    advance(1)
            else:
                if s.get("check") == "replay":
                    if not again.accepted:
                        verdicts.add(f"round {r} worker {w}: rejected for replay but fails {again.check} first")
                    elif (r, w) in chosen_rejected and trainer is not None:
                        if gate.judge(raw, w, r, weights, digest, checks=CHECKS, replay=True).accepted:
                            frame_fail.add(f"round {r} worker {w}: rejected for replay, but it replays exactly")
                        advance(1)
                elif again.accepted or again.check != s.get("check"):
                    verdicts.add(f"round {r} worker {w}: rejected for {s.get('check')}, but the gate finds "
                                 f"{again.check or 'nothing wrong'}")
        result = aggregate(plan.aggregation["rule"], weights, inputs, int(plan.aggregation["f"]))
        if result.inputs != rec["aggregation"]["inputs"] or result.selected != rec["aggregation"].get("selected"):
            agg.add(f"round {r}: aggregated {rec['aggregation']['inputs']}, the admitted updates are {result.inputs}")
        weights = result.weights
        if weights_digest(weights).hex() != rec["global_out"]:
            agg.add(f"round {r}: the aggregate recomputed bitwise differs from the logged global model")
    final_digest = weights_digest(weights).hex()
    final = _final_record(log.final_record)
    if final.get("final_weights_digest") != final_digest:
        agg.add("the final weights digest is not the one the rounds compute")
    if log.final_weights is None or weights_digest(log.final_weights).hex() != final_digest:
        agg.add("the stored final weights are not the computed final global model")
    verdicts.check(report, "verdicts", f"{sum(len(r['submissions']) for r in records)} entries re-judged")
    agg.check(report, "aggregation", f"{len(records)} rounds recomputed bitwise ({plan.aggregation['rule']})")
    policy.check(report, "policy", f"exclusion: {plan.verification['exclusion']}, replay fraction "
                                   f"{plan.replay_fraction:g}")
    if trainer is None:
        detail = f"bitwise replay needs the recorded environment; differs in {', '.join(mismatches)}"
        report.add("replay", None, "not run", detail)
    else:  # a check with nothing to look at is left out rather than passed
        if accepted:
            replay_fail.check(report, "replay", f"{len(chosen)} of {len(accepted)} accepted updates replayed bitwise")
        if replay_rejected:
            frame_fail.check(report, "rejections",
                             f"{len(chosen_rejected)} of {len(replay_rejected)} replay rejections confirmed")
    report.info.update({
        "accepted_updates": len(accepted), "replayed_updates": len(chosen),
        "detection_probability": round(len(chosen) / len(accepted), 4) if accepted else None,
        "detection_note": "chance that one bad accepted update is among the verifier's replays",
    })
    return report


def _lost_before(records: list[dict[str, Any]], r: int, w: int) -> bool:
    """A worker missing in an earlier round (crashed or timed out) is not contacted again."""
    return any(s["worker"] == w and s["status"] == "missing" for rec in records[:r] for s in rec["submissions"])


def _set_threads(plan: FederatedPlan, device: str) -> None:
    """The recorded thread count (bitwise replay needs it), never more than this machine's cores:
    a log is untrusted and does not size the verifier's resources."""
    import os

    import torch

    threads = plan.environment.get("threads")
    if device == "cpu" and isinstance(threads, int) and not isinstance(threads, bool) and 0 < threads <= (os.cpu_count() or 1):
        torch.set_num_threads(threads)


def _signatures(report: Report, plan: FederatedPlan, log: CoordinatorLog, records: list[dict[str, Any]],
                public_key: str | TrustedKey | None) -> None:
    coordinator = bytes.fromhex(plan.coordinator)
    if public_key is None:
        report.add("signer", None, f"self-asserted coordinator {fingerprint(coordinator)}",
                   "no --key given: nobody vouches for the coordinator")
    else:
        trusted = resolve_trusted_key(public_key) if isinstance(public_key, str) else public_key
        report.add("signer", trusted.matches(coordinator), trusted.source,
                   f"the log is signed by {fingerprint(coordinator)}, not by the trusted key")
    report.add("plan_signature", _ok(coordinator, PLAN_DOMAIN, log.plan_bytes, log.plan_signature),
               "coordinator signature over the plan", "the plan signature does not verify")
    problems = []
    link = plan.digest()
    for r, (rnd, rec) in enumerate(zip(log.rounds, records)):
        if not _ok(coordinator, ROUND_DOMAIN, rnd.record_bytes, rnd.signature):
            problems.append(f"round {r}: signature does not verify")
        if rec.get("round") != r or rec.get("prev") != link.hex():
            problems.append(f"round {r}: does not link to the previous record")
        link = chain_link(link, rnd.record_bytes)
    report.add("chain", not problems, f"{len(records)} round records linked and signed", "; ".join(problems[:3]))
    final_ok, detail = False, "the log has no final record (the run did not finish)"
    if log.final_record is not None and log.final_signature is not None:
        final = _final_record(log.final_record)
        final_ok = (isinstance(final, dict) and final.get("format") == FINAL_RECORD_FORMAT
                    and _ok(coordinator, FINAL_DOMAIN, log.final_record, log.final_signature)
                    and final.get("head") == link.hex() and final.get("rounds") == len(records) == plan.rounds)
        detail = "the final record does not sign this chain head and round count"
    report.add("final_signature", final_ok, "chain head, round count and final weights signed", detail)


def _ok(key: bytes, domain: bytes, message: bytes, signature: bytes) -> bool:
    try:
        verify_signature(key, domain, message, signature)
        return True
    except BadSignatureError:
        return False


def _data_commitment(report: Report, plan: FederatedPlan, data: Any) -> None:
    digests = sample_digests(data)
    problems = []
    if len(digests) != plan.data["num_samples"] or merkle_root(digests).hex() != plan.data["merkle_root"]:
        problems.append("the data held here does not match the plan's Merkle root")
    else:
        expected = assign_shards(plan.seed, len(digests), len(plan.workers))
        for entry, shard in zip(plan.workers, expected):
            if entry.shard != shard.tolist() or shard_root(digests, shard).hex() != entry.shard_root:
                problems.append(f"worker {entry.id}: shard or shard root is not the seeded assignment")
    report.add("data_commitment", not problems, f"data root and {len(plan.workers)} shard roots recomputed",
               "; ".join(problems[:3]))
