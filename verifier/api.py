"""``verify()``: judge a proof file and return a :class:`~verifier.report.Report`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Any, Callable

from pol.envinfo import environment_fingerprint, exact_mismatches, pick_device
from pol.errors import InputError
from pol.keys import TrustedKey, resolve_trusted_key
from pol.legacy import LEGACY_UNVERIFIABLE_CHECKS, is_legacy, legacy_limitations
from pol.proof_file import ProofReader
from pol.tasks import TaskData, load_data, resolve_spec
from verifier import checks
from verifier.calibration import FACTOR, FLOOR, calibrated, measure_noise
from verifier.drift import drift_check
from verifier.progress import progress_check
from verifier.report import Check, Report
from verifier.sampling import (
    choose_segments,
    default_segment_count,
    detection_probability,
    largest_updates,
    smallest_detectable_fraction,
)
from verifier.scan import CheckpointScan, scan_checkpoints
from verifier.segments import JudgeConfig, ReplayPool, SegmentJudge
from verifier.tolerance import Tolerance


@dataclass(frozen=True)
class VerifyOptions:
    segments: int | None = None          # None: the default share (see verifier.sampling)
    seed: int | None = None              # verifier's randomness; None: OS entropy
    device: str = "auto"
    mode: str = "auto"                   # auto | exact | tolerance
    data: str | None = None              # "module:callable" the user names for custom data
    model: str | None = None             # "module:callable" the user names for a custom model
    tolerance: Tolerance = Tolerance()
    workers: int = 1
    threads: int | None = None           # force a CPU thread count (None: the recorded one)
    top_updates: int = 2                 # also replay the segments with the largest LR-normalised updates
    calibrate: bool = True               # tolerance mode: calibrate max_distance on this stack (verifier.calibration)
    progress_check: bool = True


def choose_mode(reader: ProofReader, device: str, requested: str, threads: int | None = None) -> tuple[str, list[str]]:
    import torch

    recorded = reader.plan.environment
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    elif device == "cpu" and recorded.get("device_type") == "cpu" and isinstance(recorded.get("threads"), int):
        torch.set_num_threads(max(1, int(recorded["threads"])))  # same thread count makes bitwise replay possible
    mismatches = exact_mismatches(recorded, environment_fingerprint(device, recorded.get("dtype", "float32")))
    if requested == "auto":
        return ("exact" if not mismatches else "tolerance"), mismatches
    return requested, mismatches


def _auto_device(reader: ProofReader, requested: str) -> str:
    import torch

    if requested != "auto":
        return pick_device(requested)
    recorded = reader.plan.environment.get("device_type", "cpu")
    if recorded == "cuda" and torch.cuda.is_available():
        return "cuda"
    if recorded == "cpu":
        return "cpu"  # bitwise replay needs the recorded device type
    return pick_device("auto")


def verify(proof: str | os.PathLike[str], *, public_key: str | TrustedKey | None = None,
           options: VerifyOptions | None = None, progress: Callable[[str, int], Any] | None = None,
           response: str | None = None, challenge: str | None = None, **kwargs: Any) -> Report:
    """Verify a proof file. Raises :class:`pol.errors.InputError` when it cannot be judged.

    ``response`` (a prover's answer, compact proofs) goes with ``challenge``, the challenge file
    the verifier issued: the segments replayed are the challenge's, and the response must answer
    exactly that challenge.
    ``progress(label, total)`` may return a callable ``advance(n)`` used to report progress.
    Keyword arguments are shorthands for :class:`VerifyOptions` fields.
    """
    opts = options or VerifyOptions(**kwargs)
    if (response is None) != (challenge is None):
        raise InputError("--response and --challenge go together: the prover's response and the challenge "
                         "you issued with pol challenge")
    trusted = resolve_trusted_key(public_key) if isinstance(public_key, str) else public_key
    with ProofReader(proof) as reader:
        report = Report(subject=str(proof))
        report.info["signer_trust"] = "self-asserted" if trusted is None else "trusted key"
        legacy = is_legacy(reader)
        if legacy:
            report.info["legacy"] = True
            report.info["legacy_limitations"] = legacy_limitations(reader)
            opts = replace(opts, mode="tolerance" if opts.mode == "auto" else opts.mode)
        model_spec = resolve_spec(reader.plan.model.get("spec"), opts.model, "model")
        reader.model_spec = model_spec  # checkpoint 0 of a compact proof decodes against the seeded model
        data_spec = resolve_spec(reader.plan.data.get("spec"), opts.data, "data")
        issued = None
        if response is not None and challenge is not None:
            from verifier.challenge import issued_segments

            issued = issued_segments(response, challenge, reader)
        device = _auto_device(reader, opts.device)
        mode, mismatches = choose_mode(reader, device, opts.mode, opts.threads)
        if reader.mode == "compact" and mode != "exact":
            reasons = ([f"--mode {opts.mode} was requested"] if opts.mode != "auto" else []) + \
                      ([f"environment mismatches: {', '.join(mismatches)}"] if mismatches else [])
            raise InputError("compact proofs verify only in exact mode, i.e. on the recorded stack "
                             f"({'; '.join(reasons)}); their unstored checkpoints cannot be judged within a tolerance")
        config = JudgeConfig(str(reader.path), model_spec, data_spec, device, mode, opts.tolerance,
                             opts.progress_check, _threads(), response)
        with ReplayPool(config, opts.workers) as pool:  # workers start now, overlapping the checks below
            scan = scan_checkpoints(reader)
            integrity = [
                checks.signer_check(reader, trusted),
                checks.plan_signature_check(reader),
                checks.final_signature_check(reader),
                checks.chain_check(reader, scan),
                checks.plan_consistency_check(reader, scan, committed_order=not legacy),
                checks.final_weights_check(reader),
            ]
            report.extend([not_applicable_for_legacy(c) for c in integrity] if legacy else integrity)
            data = load_data(data_spec, reader.plan.data.get("kwargs") or {})
            if legacy:
                report.extend([not_applicable_for_legacy(Check("data_commitment", None)),
                               not_applicable_for_legacy(Check("initialization", None))])
            else:
                report.extend([checks.data_check(reader, data.train), checks.init_check(reader, model_spec, scan)])
            report.info.update({"mode": mode, "device": device, "threads": _threads(),
                                "environment_mismatches": mismatches})
            replay_segments(reader, report, data, opts, progress, issued, scan, pool)
        if "zk" in reader.h5:
            zk_checks(reader, trusted, report)
        return report


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def zk_checks(reader: ProofReader, trusted: TrustedKey | None, report: Report) -> None:
    """The optional /zk section (docs/ZK.md). Its results count as checks only when its
    commitments were checked against the stored checkpoints (or one of its checks failed);
    an unbound section is reported under ``info["zk"]``, never as passed checks."""
    from zk.verify import verify_zk_section

    result = verify_zk_section(reader, trusted, chain=False)  # the chain is this report's own check
    if result.bound or result.failed:
        report.extend([Check(c["name"], c["passed"], c["figure"], c["detail"]) for c in result.checks])
    else:
        report.info["zk"] = {"bound": False, "verdict": result.verdict, "checks": result.checks}


def not_applicable_for_legacy(check: Check) -> Check:
    """A check a legacy proof cannot pass or fail meaningfully: reported, never counted as passing."""
    reason = LEGACY_UNVERIFIABLE_CHECKS.get(check.name)
    if reason is None:
        return check
    return Check(check.name, None, "not applicable (legacy)", reason)


def replay_segments(reader: ProofReader, report: Report, data: TaskData, opts: VerifyOptions,
                    progress: Callable[[str, int], Any] | None, issued: list[int] | None,
                    scan: CheckpointScan, pool: ReplayPool) -> None:
    """Choose segments, calibrate tolerance if needed, judge them, and add the replay checks.

    ``issued``: the segments of the verifier's own challenge, when a prover's response answers it.
    """
    import time

    config, mode = pool.config, pool.config.mode
    n_segments = reader.num_checkpoints - 1
    count = opts.segments if opts.segments is not None else default_segment_count(n_segments)
    chosen, seed, how = select_segments(reader, n_segments, count, opts.seed, issued, opts.segments is not None)
    random_count = len(chosen)
    largest: list[int] = []
    if issued is None and opts.top_updates > 0:
        largest = largest_updates(scan.update_size, opts.top_updates)
        chosen = sorted(set(chosen) | set(largest))
    report.info.update({
        "verifier_seed": seed, "segment_selection": how, "segments_total": n_segments,
        "segments_replayed": len(chosen), "largest_updates_replayed": largest,
        "detection_probability": {"f=0.1": round(detection_probability(n_segments, random_count, 0.1), 4),
                                  "f=0.5": round(detection_probability(n_segments, random_count, 0.5), 4)},
        "smallest_forged_fraction_caught_99pct": smallest_detectable_fraction(n_segments, random_count, 0.99),
    })
    if not chosen:
        report.add("replay", False, "no segments", "the proof has no segment to replay")
        return
    tolerance = config.tolerance
    if mode == "tolerance" and opts.calibrate and config.device == "cpu" and \
            reader.plan.environment.get("device_type") == "cpu":
        judge = SegmentJudge(config, data)
        try:
            noise = measure_noise(judge, chosen[0])
        finally:
            judge.close()
        tolerance = calibrated(tolerance, noise)
        report.info["tolerance_calibration"] = {
            "noise_1_vs_2_threads": noise, "max_distance": tolerance.max_distance,
            "rule": f"clamp({FACTOR} x noise, {FLOOR}, {opts.tolerance.max_distance})"}
    if mode == "tolerance":
        report.info["tolerance"] = {"max_distance": tolerance.max_distance, "min_progress": tolerance.min_progress}
    cores = os.cpu_count() or 1
    if opts.workers > 1 and opts.workers * _threads() > cores:
        report.info["warning"] = (f"{opts.workers} workers x {_threads()} threads exceed {cores} cores; "
                                  "replay will be slower than with fewer workers (use --threads 1 or fewer workers)")
    t0 = time.perf_counter()
    advance = progress("replay", len(chosen)) if progress else None
    outcomes = pool.judge(chosen, tolerance, advance, data)
    report.info["replay_seconds"] = round(time.perf_counter() - t0, 3)
    report.info["replayed_steps"] = sum(o.replayed_steps for o in outcomes)
    report.info["replayed_segments"] = chosen
    report.info["segment_figures"] = [
        {"segment": o.segment, "distance": o.distance, "progress": o.progress_ratio, "start": o.start_source,
         "toward_final": round(o.toward_final, 4), "seconds": round(o.seconds, 3)} for o in outcomes]
    failures = [f"segment {o.segment} (steps {o.start_step}-{o.stop_step}): {o.detail}" for o in outcomes if not o.passed]
    worst = max((o.distance for o in outcomes), default=math.nan)
    figure = ("bitwise equal" if mode == "exact" and not failures else f"max relative distance {worst:.3g}")
    report.add("replay", not failures, f"{len(chosen) - len(failures)}/{len(chosen)} segments reproduce; {figure}",
               "; ".join(failures[:4]))
    toward = [o.toward_final for o in outcomes if o.segment < n_segments - 1]  # the last ends at the final weights
    if mode == "tolerance" and toward:
        report.checks.append(drift_check(toward))
    elif mode == "tolerance":
        report.info["drift"] = "not applicable: only the last segment was replayed, and it ends at the final weights"
    figures = [o.progress for o in outcomes if o.progress is not None]
    if opts.progress_check and data.heldout is not None:
        report.checks.append(progress_check(figures))
        report.info["progress"] = [p.as_dict() for p in figures]
    else:
        report.info["progress"] = "not run: no held-out data for this task"


def select_segments(reader: ProofReader, n: int, count: int, seed: int | None, issued: list[int] | None,
                    explicit: bool = False) -> tuple[list[int], int | None, str]:
    """The segments of the verifier's own challenge (``issued``, checked against the response);
    else an embedded Fiat-Shamir response (unless the verifier asked for its own choice with a
    seed or a segment count, or the response answers fewer than ``count`` segments); else the
    verifier's own uniform random choice (compact proofs then regenerate start states from
    anchors, using embedded states where they match)."""
    from verifier import challenge

    if issued is not None:
        return issued, None, "interactive challenge (verifier's randomness)"
    how = "uniform, verifier's randomness"
    if reader.mode == "compact" and reader.has_embedded_response() and seed is None and not explicit:
        segs = challenge.embedded_segments(reader)
        if len(segs) >= min(count, n):
            return segs, None, challenge.NON_INTERACTIVE_NOTE
        how += (f" (the embedded Fiat-Shamir response answers {len(segs)} segment(s), fewer than the "
                f"{min(count, n)} the verifier draws: not used to choose segments)")
    chosen, used = choose_segments(n, count, seed)
    return chosen, used, how
