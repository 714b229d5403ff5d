"""Segment selection (largest updates), drift figure, progress rule, calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from verifier.calibration import FLOOR, calibrated, measure_noise
from verifier.drift import MAX_MEAN_TOWARD, drift_check, error_toward_final
from verifier.progress import EXACT_MODE, SegmentProgress, critical_t, progress_check
from verifier.sampling import (
    detection_probability,
    samples_for,
    smallest_detectable_fraction,
    targeted_segments,
)
from verifier.scan import CheckpointScan, scan_checkpoints
from verifier.segments import JudgeConfig, SegmentJudge
from verifier.tolerance import Tolerance


def test_targeted_segments_by_each_figure_with_their_predecessors() -> None:
    scan = CheckpointScan()
    scan.update_size = {(j, j + 1): v for j, v in enumerate([1.0, 1.1, 9.0, 0.9, 3.0, 1.0])}
    scan.raw_update = {(j, j + 1): v for j, v in enumerate([5.0, 1.0, 1.0, 1.0, 1.0, 1.0])}
    scan.toward_final = {(j, j + 1): v for j, v in enumerate([0.0, 0.0, 0.1, 0.0, 0.0, 0.0])}
    scan.optimizer_norm = {4: 50.0, 5: 1.0, 6: 1.0}
    t = targeted_segments(scan, 6, top=1)
    assert t.reasons["last segment"] == [5]
    assert t.reasons["largest LR-normalised update"] == [1, 2]  # segment 2 and the one that produced its start
    assert t.reasons["largest raw update"] == [0]
    assert t.reasons["largest move toward the final weights"] == [1, 2]
    assert t.reasons["largest optimizer state (replayed up to it)"] == [3]
    assert t.segments == [0, 1, 2, 3, 5]
    assert targeted_segments(scan, 6, top=0).segments == [5]
    assert targeted_segments(scan, 6, top=1, last_stretch=3).reasons["last segment"] == [3, 4, 5]  # compact: the stretch
    assert targeted_segments(scan, 6, top=0, last_stretch=3).segments == [5]  # the private choice: the last segment


def test_samples_for_a_confidence_and_detectable_fraction() -> None:
    s = samples_for(2000, 0.99, 0.1)
    assert detection_probability(2000, s, 0.1) >= 0.99 > detection_probability(2000, s - 1, 0.1)
    assert s == 44  # ~ln(100)/0.1: the number of samples does not grow with the run
    f = smallest_detectable_fraction(100, 10, 0.99)
    assert f is not None and detection_probability(100, 10, f) >= 0.99
    assert detection_probability(100, 10, f - 0.01) < 0.99
    assert smallest_detectable_fraction(10, 10, 0.99) == 0.1


def test_scan_update_sizes_are_normalised_by_the_committed_lr(honest_proof: Path) -> None:
    from pol.proof_file import ProofReader

    with ProofReader(honest_proof) as r:
        scan = scan_checkpoints(r)
    assert sorted(scan.update_size) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert all(np.isfinite(v) and v > 0 for v in scan.update_size.values())
    assert sorted(scan.toward_final) == sorted(scan.raw_update) == sorted(scan.update_size)
    assert scan.toward_final[(3, 4)] > 0  # the last segment ends at the final weights
    assert sorted(scan.optimizer_norm) == [1, 2, 3, 4] and scan.digest_mismatch == [] and scan.non_finite == []


def _state(v: np.ndarray) -> dict:
    return {"model/w": v.astype(np.float32)}


def test_drift_figure_separates_steering_from_noise() -> None:
    rng = np.random.default_rng(0)
    final = rng.normal(size=500)
    replayed = rng.normal(size=500)
    steered = replayed + 0.05 * (final - replayed)
    noisy = replayed + 0.05 * rng.normal(size=500)
    assert error_toward_final(_state(steered), _state(replayed), final.astype(np.float32)) > 0.99
    assert abs(error_toward_final(_state(noisy), _state(replayed), final.astype(np.float32))) < 0.2
    assert drift_check([0.9, 0.8, 0.95]).passed is False
    assert drift_check([0.05, -0.1, 0.02]).passed is True
    assert drift_check([MAX_MEAN_TOWARD + 0.01]).passed is False
    assert drift_check([]).passed is None


def test_progress_rule_tolerates_noise_but_not_a_clear_deficit() -> None:
    honest = [SegmentProgress(i, 0.30 + 0.01 * i, 0.28 + 0.012 * i) for i in range(5)]
    assert progress_check(honest).passed is True
    noisy = [SegmentProgress(0, 0.30, 0.31), SegmentProgress(1, 0.30, 0.28), SegmentProgress(2, 0.30, 0.305)]
    assert progress_check(noisy).passed is True
    forged = [SegmentProgress(i, 0.0, 0.3 + 0.001 * i) for i in range(5)]
    assert progress_check(forged).passed is False
    assert progress_check([]).passed is None


def test_progress_rule_does_not_judge_a_single_segment() -> None:
    # one margin has no spread to be judged against: an honest last segment late in training can
    # show a clearly negative one (the old fallback, 0.1 x the held-out drop, rejected such runs)
    lone = [SegmentProgress(199, 0.0004, 0.0014)]
    assert progress_check(lone).passed is None
    assert progress_check(lone * 2).passed is False  # the same deficit twice, with no spread, is judged


def test_progress_rule_uses_the_t_quantile_for_few_segments() -> None:
    # an honest 2-segment verification measured -0.0923 with s.e. 0.028: 3.3 s.e., which a normal
    # Z = 3 rejected; with one degree of freedom the spread is too uncertain to call that a deficit
    two = [SegmentProgress(0, 0.0, 0.0602), SegmentProgress(1, 0.0, 0.0321)]
    assert progress_check(two).passed is True
    assert critical_t(1) > 300 and critical_t(4) == pytest.approx(7.17) and critical_t(1000) == pytest.approx(3.23)
    assert critical_t(11) == critical_t(10) > critical_t(12)  # between listed values: the stricter one
    many = [SegmentProgress(i, 0.0, 0.0602 if i % 2 else 0.0321) for i in range(40)]
    assert progress_check(many).passed is False  # the same deficit, consistently, over many segments


def test_progress_is_judged_in_tolerance_mode_and_only_reported_in_exact_mode(honest_proof: Path,
                                                                             keys: dict[str, Path]) -> None:
    from verifier import VerifyOptions, verify

    exact = verify(honest_proof, public_key=str(keys["pub"]), options=VerifyOptions(segments=3, seed=1))
    assert exact.verdict == "verified" and exact.info["mode"] == "exact"
    assert "progress" not in [c.name for c in exact.checks]
    assert exact.info["progress"]["not_judged"] == EXACT_MODE and len(exact.info["progress"]["figures"]) >= 2
    tolerant = verify(honest_proof, public_key=str(keys["pub"]),
                      options=VerifyOptions(segments=3, seed=1, mode="tolerance"))
    assert [c.passed for c in tolerant.checks if c.name == "progress"] == [True]
    with pytest.raises(TypeError, match="not both"):
        verify(honest_proof, public_key=str(keys["pub"]), options=VerifyOptions(), segments=3)


def test_calibration_measures_tiny_noise_for_an_mlp(honest_proof: Path) -> None:
    config = JudgeConfig(str(honest_proof), "digits-mlp", "digits-mlp", "cpu", "tolerance", Tolerance(), False, 1)
    judge = SegmentJudge(config)
    try:
        noise = measure_noise(judge, 1)
    finally:
        judge.close()
    assert noise is not None and noise < 1e-3
    assert calibrated(Tolerance(), noise).max_distance == FLOOR
    assert calibrated(Tolerance(max_distance=0.25), 0.04).max_distance == 0.2
    assert calibrated(Tolerance(max_distance=0.25), 1.0).max_distance == 0.25
    assert calibrated(Tolerance(), None) == Tolerance()


def test_tolerance_mode_on_a_one_segment_proof_is_not_incomplete(tmp_path: Path, keys: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_runner import run_json
    from helpers_train import train_recorded

    proof = train_recorded(tmp_path / "one.pol.h5", keys["key"], steps=10, every=10)
    code, doc = run_json(["verify", proof, "--key", keys["pub"], "--mode", "tolerance"], capsys)
    assert doc["segments_total"] == 1 and doc["mode"] == "tolerance"
    assert "drift" not in [c["name"] for c in doc["checks"]] and "not applicable" in doc["drift"]
    assert code == 0 and doc["verdict"] == "verified", doc


def test_no_drift_figure_for_the_last_segment(proof_copy: Path) -> None:
    import h5py

    with h5py.File(proof_copy, "r+") as f:  # the last checkpoint (the final weights) off the replayed end
        ds = f["checkpoints/000004/model/fc2.bias"]
        ds[...] = ds[()] + np.float32(1e-3)
    judge = SegmentJudge(JudgeConfig(str(proof_copy), "digits-mlp", "digits-mlp", "cpu", "tolerance", Tolerance(),
                                     False, 1))
    try:
        last = judge.judge(3)
    finally:
        judge.close()
    assert last.distance > 0  # the replayed end differs from the recorded (= final) one ...
    assert last.toward_final == 0.0  # ... which would give cos = 1 toward the final weights: not measured


def test_init_check_compares_with_a_fresh_optimizer(honest_proof: Path) -> None:
    from pol.proof_file import ProofReader
    from verifier.checks import expected_initial_state, init_check

    with ProofReader(honest_proof) as reader:
        scan = scan_checkpoints(reader)
        expected = expected_initial_state(reader, "digits-mlp")
        assert init_check(reader, expected, scan).passed is True
        expected["optim/state/fc1.weight/momentum_buffer"] = np.zeros((64, 64), np.float32)
        check = init_check(reader, expected, scan)
    assert check.passed is False and check.figure == "optimizer state differs"


def test_held_out_tensors_move_to_the_device_once() -> None:
    import torch

    from verifier.progress import HeldOut

    held = HeldOut(torch.utils.data.TensorDataset(torch.zeros(10, 3), torch.zeros(10, dtype=torch.long)), 4)
    first = held.source("cpu")
    assert held.source("cpu") is first   # reused by every segment, not rebuilt
    x, y = first.batch(np.asarray([1, 2]))
    assert tuple(x.shape) == (2, 3) and tuple(y.shape) == (2,)
