"""``verify()``: judge a proof file and return a :class:`~verifier.report.Report`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable


from pol.envinfo import environment_fingerprint, exact_mismatches
from pol.errors import DataUnavailableError
from pol.keys import TrustedKey, resolve_trusted_key
from pol.proof_file import ProofReader
from pol.tasks import TASKS, TaskData, load_data
from verifier import checks
from verifier.progress import HeldOut, SegmentProgress, progress_check, segment_progress
from verifier.replay import Replayer, pick_device
from verifier.report import Check, Report
from verifier.sampling import choose_segments, default_segment_count, detection_probability
from verifier.tolerance import Tolerance, compare_states


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
    progress_check: bool = True


def resolve_spec(plan_spec: str | None, user_spec: str | None, what: str) -> str:
    """Built-in names resolve to this package; any other code must be named by the user."""
    if user_spec:
        return user_spec
    if plan_spec in TASKS:
        return plan_spec
    raise DataUnavailableError(
        f"the proof's {what} is {plan_spec!r}, which is not built in; name the code yourself with "
        f"--{what} module:callable (a verifier never imports code named inside a proof)")


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
           **kwargs: Any) -> Report:
    """Verify a proof file. Raises :class:`pol.errors.InputError` when it cannot be judged.

    ``progress(label, total)`` may return a callable ``advance(n)`` used to report progress.
    Keyword arguments are shorthands for :class:`VerifyOptions` fields.
    """
    opts = options or VerifyOptions(**kwargs)
    trusted = resolve_trusted_key(public_key) if isinstance(public_key, str) else public_key
    with ProofReader(proof) as reader:
        report = Report(subject=str(proof))
        report.info["signer_trust"] = "self-asserted" if trusted is None else "trusted key"
        report.extend([
            checks.signer_check(reader, trusted),
            checks.plan_signature_check(reader),
            checks.final_signature_check(reader),
            checks.chain_check(reader),
            checks.plan_consistency_check(reader),
            checks.final_weights_check(reader),
        ])
        model_spec = resolve_spec(reader.plan.model.get("spec"), opts.model, "model")
        data_spec = resolve_spec(reader.plan.data.get("spec"), opts.data, "data")
        data = load_data(data_spec, reader.plan.data.get("kwargs") or {})
        report.add(*_as_args(checks.data_check(reader, data.train)))
        report.add(*_as_args(checks.init_check(reader, model_spec)))
        replay_segments(reader, report, data, model_spec, opts, progress)
        return report


def _as_args(check: Check) -> tuple[str, bool | None, str, str]:
    return check.name, check.passed, check.figure, check.detail


def replay_segments(reader: ProofReader, report: Report, data: TaskData, model_spec: str,
                    opts: VerifyOptions, progress: Callable[[str, int], Any] | None) -> None:
    device = _auto_device(reader, opts.device)
    mode, mismatches = choose_mode(reader, device, opts.mode, opts.threads)
    n_segments = reader.num_checkpoints - 1
    count = opts.segments if opts.segments is not None else default_segment_count(n_segments)
    chosen, seed = choose_segments(n_segments, count, opts.seed)
    steps = reader.checkpoint_steps
    report.info.update({
        "mode": mode, "device": device, "verifier_seed": seed, "segments_total": n_segments,
        "segments_replayed": len(chosen),
        "detection_probability": {"f=0.1": round(detection_probability(n_segments, len(chosen), 0.1), 4),
                                  "f=0.5": round(detection_probability(n_segments, len(chosen), 0.5), 4)},
        "environment_mismatches": mismatches,
    })
    if not chosen:
        report.add("replay", False, "no segments", "the proof has no segment to replay")
        return
    replayer = Replayer(reader.plan, data.train, device, model_spec)
    advance = progress("replay", len(chosen)) if progress else None
    failures: list[str] = []
    figures: list[float] = []
    segment_figures: list[dict[str, float]] = []
    progress_figures: list[SegmentProgress] = []
    heldout = HeldOut(data.heldout, reader.plan.batch_size) if opts.progress_check and data.heldout is not None else None
    for j in chosen:
        start, stop = int(steps[j]), int(steps[j + 1])
        if not (reader.has_checkpoint(j) and reader.has_checkpoint(j + 1)):
            failures.append(f"segment {j}: checkpoint not stored (compact proof: use a challenge response)")
            continue
        start_state = reader.checkpoint_state(j)
        replayed = replayer.run(start_state, start, reader.indices(start, stop))
        recorded = reader.checkpoint_state(j + 1)
        result = compare_states(mode, start_state, recorded, replayed, reader.state_digests[j + 1], opts.tolerance)
        figures.append(result.distance)
        segment_figures.append({"segment": j, "distance": result.distance, "progress": result.progress})
        if not result.passed:
            failures.append(f"segment {j} (steps {start}-{stop}): {result.detail}")
        if heldout is not None:
            progress_figures.append(segment_progress(replayer, heldout, j, start_state, recorded,
                                                     reader.indices(start, stop)))
        if advance:
            advance(1)
    worst = max(figures) if figures else math.nan
    figure = ("bitwise equal" if mode == "exact" and not failures else
              f"max relative distance {worst:.3g}")
    report.info["replayed_segments"] = chosen
    report.info["segment_figures"] = segment_figures
    report.add("replay", not failures, f"{len(chosen) - len(failures)}/{len(chosen)} segments reproduce; {figure}",
               "; ".join(failures[:4]))
    if heldout is not None:
        report.checks.append(progress_check(progress_figures))
        report.info["progress"] = [p.as_dict() for p in progress_figures]
    else:
        report.info["progress"] = "not run: no held-out data for this task"

