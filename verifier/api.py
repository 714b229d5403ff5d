"""``verify()``: judge a proof file and return a :class:`~verifier.report.Report`.

Order of work (cheap and decisive first): the file is parsed in a sandbox and its layout
checked (:class:`pol.proof_file.ProofReader`); then signer, signatures and chain links, which
need no decoding (a failure ends the run: the rest is reported as not run); then the environment
(the verifier decides the replay mode, the prover's claims never loosen it); then one decoding
pass (checkpoints, plan consistency, data, initialisation); then replay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from pol.envinfo import Reproduction, apply_in_process, pick_device, reproduction
from pol.errors import InputError
from pol.keys import TrustedKey, resolve_trusted_key
from pol.legacy import LEGACY_UNVERIFIABLE_CHECKS, is_legacy, legacy_limitations
from pol.proof_file import ProofReader
from pol.resources import check_model_size
from pol.tasks import TaskData, load_data, resolve_spec
from verifier import checks
from verifier.calibration import FACTOR, FLOOR, calibrated, measure_noise
from verifier.drift import drift_check
from verifier.progress import MIN_SEGMENTS as MIN_PROGRESS_SEGMENTS
from verifier.progress import EXACT_MODE, progress_check
from verifier.report import Check, Report
from verifier.sampling import (
    choose_segments,
    default_segment_count,
    detection_probability,
    samples_for,
    smallest_detectable_fraction,
    targeted_segments,
)
from verifier.scan import CheckpointScan, model_layout, scan_checkpoints
from verifier.segments import JudgeConfig, ReplayPool, SegmentJudge
from verifier.tolerance import Tolerance

CHEAP_CHECKS = ("signer", "plan_signature", "final_signature", "chain")
LATER_CHECKS = ("checkpoints", "plan_consistency", "final_weights", "data_commitment", "initialization", "replay")


@dataclass(frozen=True)
class VerifyOptions:
    segments: int | None = None          # None: the default share (see verifier.sampling), or --confidence
    steps: int = 0                       # single steps to draw (proofs with per-step digests; start states regenerated here)
    confidence: float | None = None      # with forged_fraction: draw enough segments for this guarantee
    forged_fraction: float | None = None
    seed: int | None = None              # verifier's randomness; None: OS entropy
    device: str = "auto"
    mode: str = "auto"                   # auto (exact when this machine reproduces the recording, else refuse) | exact | tolerance
    data: str | None = None              # "module:callable" the user names for custom data
    model: str | None = None             # "module:callable" the user names for a custom model
    loss: str | None = None              # "module:callable" the user names for a custom loss
    data_kwargs: dict[str, Any] | None = None   # override the plan's data kwargs (e.g. a local data path)
    model_kwargs: dict[str, Any] | None = None  # must equal the plan's (they are part of what was trained)
    tolerance: Tolerance = Tolerance()
    workers: int = 1
    threads: int | None = None           # force a CPU thread count (None: the recorded one)
    top_updates: int = 2                 # targeted replay: the largest updates by each figure (verifier.sampling)
    calibrate: bool = True               # tolerance mode: calibrate max_distance on this stack (verifier.calibration)
    progress_check: bool = True
    use_embedded_response: bool = False  # let a prover's embedded Fiat-Shamir response choose segments


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


def decide_mode(reader: ProofReader, device: str, opts: VerifyOptions) -> tuple[str, Reproduction]:
    """The verifier decides: exact where this machine reproduces the recording, else refuse,
    unless its user asks for tolerance mode. An environment claim never loosens a threshold."""
    rep = reproduction(reader.plan.environment, device, opts.threads)
    requested = "tolerance" if reader.legacy and opts.mode == "auto" else opts.mode
    if requested == "tolerance":
        return "tolerance", rep
    if not rep.possible:
        raise InputError("this machine cannot replay the proof bitwise (" + "; ".join(rep.blockers) + "). Verify on "
                         "a matching stack, or pass --mode tolerance to judge within a tolerance calibrated here "
                         "(weaker: docs/SECURITY.md)")
    return "exact", rep


def verify(proof: str | os.PathLike[str], *, public_key: str | TrustedKey | None = None,
           options: VerifyOptions | None = None, progress: Callable[[str, int], Any] | None = None,
           response: str | None = None, challenge: str | None = None, **kwargs: Any) -> Report:
    """Verify a proof file. Raises :class:`pol.errors.InputError` when it cannot be judged.

    ``response`` (a prover's answer) goes with ``challenge``, the challenge file the verifier
    issued: the segments and steps replayed are the challenge's, and the response must answer
    exactly that challenge. ``progress(label, total)`` may return a callable ``advance(n)``.
    Keyword arguments are shorthands for :class:`VerifyOptions` fields.
    """
    if options is not None and kwargs:
        raise TypeError(f"verify() takes options= or VerifyOptions keyword arguments, not both: {sorted(kwargs)}")
    opts = options or VerifyOptions(**kwargs)
    if (response is None) != (challenge is None):
        raise InputError("--response and --challenge go together: the prover's response and the challenge "
                         "you issued with pol challenge")
    with ProofReader(proof, model_spec=opts.model) as reader:
        return verify_open(reader, public_key=public_key, options=opts, progress=progress, response=response,
                           challenge=challenge)


def verify_open(reader: ProofReader, *, public_key: str | TrustedKey | None = None,
                options: VerifyOptions | None = None, progress: Callable[[str, int], Any] | None = None,
                response: str | None = None, challenge: str | None = None) -> Report:
    """:func:`verify` on a proof already opened (e.g. to read it once for several purposes)."""
    opts = options or VerifyOptions()
    trusted = resolve_trusted_key(public_key) if isinstance(public_key, str) else public_key
    subject = str(reader.path)
    report = Report(subject=subject)
    report.info["signer_trust"] = "self-asserted" if trusted is None else "trusted key"
    legacy = is_legacy(reader)
    if legacy:
        report.info["legacy"] = True
        report.info["legacy_limitations"] = legacy_limitations(reader)
    cheap = [checks.signer_check(reader, trusted), checks.plan_signature_check(reader),
             checks.final_signature_check(reader), checks.chain_check(reader)]
    report.extend([not_applicable_for_legacy(c) for c in cheap] if legacy else cheap)
    if any(c.passed is False for c in report.checks):
        for name in LATER_CHECKS:
            report.add(name, None, "not run", "an integrity check above failed; nothing else was judged")
        report.info["stopped_early"] = True
        return report
    model_spec = resolve_spec(reader.plan.model.get("spec"), opts.model, "model")
    check_model_size(model_spec, reader.plan.model.get("kwargs") or {}, reader.byte_budget)  # before any is built
    reader.model_spec = model_spec  # checkpoint 0 of a compact proof decodes against the seeded model
    data_spec = resolve_spec(reader.plan.data.get("spec"), opts.data, "data")
    if opts.model_kwargs is not None and opts.model_kwargs != reader.plan.model.get("kwargs"):
        raise InputError("--model-kwargs must equal the plan's model kwargs (they define the trained model); "
                         f"the plan has {reader.plan.model.get('kwargs')}")
    data_kwargs = opts.data_kwargs if opts.data_kwargs is not None else (reader.plan.data.get("kwargs") or {})
    issued = None
    if response is not None and challenge is not None:
        from verifier.challenge import issued_units

        issued = issued_units(response, challenge, reader)[:2]
    device = _auto_device(reader, opts.device)
    mode, rep = decide_mode(reader, device, opts)
    if reader.mode == "compact" and mode != "exact":
        raise InputError(f"compact proofs verify only in exact mode, on the recorded stack (--mode {opts.mode} was "
                         "requested); their unstored checkpoints cannot be judged within a tolerance")
    apply_in_process(rep)
    threads = rep.threads if rep.threads is not None else _threads()
    config = JudgeConfig(str(reader.path), model_spec, data_spec, device, mode, opts.tolerance, opts.progress_check,
                         threads, response, opts.loss, rep.deterministic, tuple(sorted(rep.env.items())),
                         opts.use_embedded_response)
    with ReplayPool(config, opts.workers) as pool:  # workers start now, overlapping the checks below
        data = load_data(data_spec, data_kwargs)
        expected = pool.expected_initial_state(reader)
        reader.use_seeded_base(expected)  # compact proofs code checkpoint 0 against it
        scan = scan_checkpoints(reader)
        later = [checks.checkpoints_check(reader, scan, model_layout(expected)),
                 checks.plan_consistency_check(reader, scan, len(data.train), committed_order=not legacy),
                 checks.final_weights_check(reader)]
        report.extend([not_applicable_for_legacy(c) for c in later] if legacy else later)
        if legacy:
            report.extend([not_applicable_for_legacy(Check("data_commitment", None)),
                           not_applicable_for_legacy(Check("initialization", None))])
        else:
            report.extend([checks.data_check(reader, data.train), checks.init_check(reader, expected, scan)])
        report.info.update({"mode": mode, "mode_decided_by": "verifier", "device": device, "threads": threads,
                            "environment_adjustments": rep.notes,
                            "environment_mismatches": rep.blockers if mode == "tolerance" else []})
        replay_segments(reader, report, data, opts, progress, issued, scan, pool)
    if reader.section("zk") is not None:
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
                    progress: Callable[[str, int], Any] | None, issued: tuple[list[int], list[int]] | None,
                    scan: CheckpointScan, pool: ReplayPool) -> None:
    """Choose segments (and single steps), calibrate tolerance if needed, judge them, and add the
    replay checks.

    ``issued``: the (segments, steps) of the verifier's own challenge, when a prover's response
    answers it (the challenge already holds the targeted segments: ``pol challenge`` adds them).
    """
    import time

    config, mode = pool.config, pool.config.mode
    n_segments = reader.num_checkpoints - 1
    count = _uniform_count(n_segments, opts)
    chosen, steps, seed, how = select_units(reader, n_segments, count, opts.seed, issued, opts)
    uniform = list(chosen)
    targeted = targeted_segments(scan, n_segments, opts.top_updates,
                                 _last_stretch(reader) if reader.mode == "compact" else None)
    if issued is None:
        chosen = sorted(set(chosen) | set(targeted.segments))
    replayable = set(range(n_segments)) if reader.mode == "compact" or issued else \
        {j for j in range(n_segments) if reader.is_complete(j)}
    report.info.update({
        "verifier_seed": seed, "segment_selection": how, "segments_total": n_segments,
        "segments_uniform": len(uniform), "segments_replayed": len(chosen),
        "targeted_segments": targeted.reasons,
        "detection_probability": {"f=0.1": round(detection_probability(n_segments, len(uniform), 0.1), 4),
                                  "f=0.5": round(detection_probability(n_segments, len(uniform), 0.5), 4)},
        "smallest_forged_fraction_caught_99pct": smallest_detectable_fraction(n_segments, len(uniform), 0.99),
        "single_segment": (f"a single forged segment is caught with certainty when it is one of the "
                           f"{len(targeted.segments)} targeted segments (the last one, and where the updates are "
                           f"largest); anywhere else with probability {len(uniform)}/{n_segments} = "
                           f"{len(uniform) / max(n_segments, 1):.3f} (uniform draw)"),
    })
    if steps:
        report.info["steps_challenged"] = len(steps)
        report.info["step_detection_probability"] = {
            f"f={f}": round(detection_probability(reader.plan.num_steps, len(steps), f), 4) for f in (0.01, 0.1, 0.5)}
    fraction = opts.forged_fraction
    if fraction is not None:
        units, drawn, unit = (reader.plan.num_steps, len(steps), "step") if steps else (n_segments, len(uniform), "segment")
        report.info["guarantee"] = {"requested_confidence": opts.confidence, "forged_fraction": fraction,
                                    "unit": unit, "uniform_samples": drawn,
                                    "reached": round(detection_probability(units, drawn, fraction), 4)}
    chosen = [j for j in chosen if j in replayable] or chosen
    if not chosen and not steps:
        report.add("replay", False, "no segments", "the proof has no segment to replay")
        return
    tolerance = config.tolerance
    if mode == "tolerance" and opts.calibrate and config.device == "cpu":
        judge = SegmentJudge(config, data, reader)
        try:
            noise = measure_noise(judge, chosen[0])
        finally:
            judge.close()
        tolerance = calibrated(tolerance, noise)
        report.info["tolerance_calibration"] = {
            "noise_1_vs_2_threads": noise, "max_distance": tolerance.max_distance,
            "rule": f"clamp({FACTOR} x noise, {FLOOR}, {opts.tolerance.max_distance}); the recorded environment "
                    "never widens it"}
    if mode == "tolerance":
        report.info["tolerance"] = {"max_distance": tolerance.max_distance, "min_progress": tolerance.min_progress}
    cores = os.cpu_count() or 1
    if opts.workers > 1 and opts.workers * config.threads > cores:  # type: ignore[operator]
        report.info["warning"] = (f"{opts.workers} workers x {config.threads} threads exceed {cores} cores; "
                                  "replay will be slower than with fewer workers (use fewer workers)")
    t0 = time.perf_counter()
    units = sorted([("segment", j) for j in chosen] + [("step", t) for t in steps],
                   key=lambda u: (int(reader.checkpoint_steps[u[1]]) if u[0] == "segment" else u[1], u[0]))
    advance = progress("replay", len(units)) if progress else None
    all_outcomes = pool.judge(units, tolerance, advance, data, reader)
    outcomes = [o for o in all_outcomes if o.unit == "segment"]
    step_outcomes = [o for o in all_outcomes if o.unit == "step"]
    report.info["replay_seconds"] = round(time.perf_counter() - t0, 3)
    replayed_steps = sum(o.replayed_steps for o in all_outcomes)
    report.info["replayed_steps"] = replayed_steps
    report.info["verify_compute_fraction"] = round(replayed_steps / max(reader.plan.num_steps, 1), 4)
    report.info["replayed_segments"] = chosen
    report.info["segment_figures"] = [
        {"segment": o.segment, "distance": o.distance, "progress": o.progress_ratio, "start": o.start_source,
         "toward_final": round(o.toward_final, 4), "seconds": round(o.seconds, 3)} for o in outcomes]
    report.info["steps_total"] = reader.plan.num_steps
    report.info["challenged_steps"] = list(steps)
    report.info["replay_failures"] = [{"unit": o.unit, "index": o.segment, "start_step": o.start_step,
                                       "stop_step": o.stop_step, "detail": o.detail} for o in all_outcomes if not o.passed]
    failures = [f"segment {o.segment} (steps {o.start_step}-{o.stop_step}): {o.detail}" for o in outcomes if not o.passed]
    failures += [f"step {o.start_step}: {o.detail}" for o in step_outcomes if not o.passed]
    worst = max((o.distance for o in outcomes), default=0.0)
    figure = ("bitwise equal" if mode == "exact" and not failures else f"max relative distance {worst:.3g}")
    counted = f"{len(outcomes) - sum(not o.passed for o in outcomes)}/{len(outcomes)} segments"
    if step_outcomes:
        counted += f" and {len(step_outcomes) - sum(not o.passed for o in step_outcomes)}/{len(step_outcomes)} steps"
    report.add("replay", not failures, f"{counted} reproduce; {figure}", "; ".join(failures[:4]))
    toward = [o.toward_final for o in outcomes if o.segment < n_segments - 1]  # the last ends at the final weights
    if mode == "tolerance" and toward:
        report.checks.append(drift_check(toward))
    elif mode == "tolerance":
        report.info["drift"] = "not applicable: only the last segment was replayed, and it ends at the final weights"
    figures = [o.progress for o in outcomes if o.progress is not None]
    if opts.progress_check and data.heldout is not None:
        check = progress_check(figures)
        if mode == "exact" and figures:  # bitwise replay already proves what the figure corroborates
            report.info["progress"] = {"not_judged": EXACT_MODE, "figure": check.figure,
                                       "figures": [p.as_dict() for p in figures]}
        elif 0 < len(figures) < MIN_PROGRESS_SEGMENTS:  # a figure, not a check: no spread to judge it against
            report.info["progress"] = {"not_judged": check.detail, "figures": [p.as_dict() for p in figures]}
        else:
            report.checks.append(check)
            report.info["progress"] = [p.as_dict() for p in figures]
    else:
        report.info["progress"] = "not run: no held-out data for this task"


def _uniform_count(n: int, opts: VerifyOptions) -> int:
    if opts.segments is not None:
        return opts.segments
    if opts.confidence is not None or opts.forged_fraction is not None:
        if opts.confidence is None or opts.forged_fraction is None:
            raise InputError("--confidence and --forged-fraction go together")
        try:
            return samples_for(n, opts.confidence, opts.forged_fraction)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    return default_segment_count(n)


def _last_stretch(reader: ProofReader) -> int:
    """First segment after the last checkpoint stored whole (compact proofs)."""
    complete = [i for i in reader.stored_checkpoints if reader.is_complete(i)]
    return max(complete) if complete else 0


def select_units(reader: ProofReader, n: int, count: int, seed: int | None,
                 issued: tuple[list[int], list[int]] | None,
                 opts: VerifyOptions) -> tuple[list[int], list[int], int | None, str]:
    """(segments, steps, seed used, how they were chosen): the units of the verifier's own
    challenge (``issued``, checked against the response); else, only when the user asks for it
    (``use_embedded_response``), an embedded Fiat-Shamir response; else the verifier's own uniform
    random choice of segments."""
    from verifier import challenge

    if issued is not None:
        return issued[0], issued[1], None, "interactive challenge (verifier's randomness)"
    if opts.use_embedded_response:
        if not reader.has_embedded_response():
            raise InputError("--use-embedded-response was given but the proof embeds no response")
        segs, steps = challenge.embedded_units(reader)
        if len(segs) < min(count, n):
            raise InputError(f"the embedded response answers {len(segs)} segment(s), fewer than the {min(count, n)} "
                             "the verifier draws")
        return segs, steps, None, challenge.NON_INTERACTIVE_NOTE
    chosen, used = choose_segments(n, count, seed)
    steps: list[int] = []
    if opts.steps:
        if reader.step_state_digests is None:
            raise InputError("this proof commits no per-step digests: --steps cannot be judged (record with step digests)")
        steps, _ = choose_segments(reader.plan.num_steps, opts.steps, used + 1)
    return chosen, steps, used, "uniform, verifier's randomness"
