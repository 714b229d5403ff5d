"""Tolerance mode: honest proofs pass across thread counts; thresholds reject real deviations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_train import train_recorded

from verifier.api import VerifyOptions, verify
from verifier.tolerance import Tolerance, compare_states


@pytest.fixture(scope="module")
def two_thread_proof(tmp_path_factory: pytest.TempPathFactory, keys: dict) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        return train_recorded(tmp_path_factory.mktemp("t2") / "cnn.pol.h5", keys["key"], task="digits-cnn",
                              steps=40, every=10)
    finally:
        torch.set_num_threads(before)


def test_honest_proof_recorded_with_2_threads_verifies_exactly_and_within_tolerance(two_thread_proof: Path,
                                                                                   keys: dict) -> None:
    report = verify(two_thread_proof, public_key=str(keys["pub"]), options=VerifyOptions(segments=4, seed=0))
    assert report.verdict == "verified" and report.info["mode"] == "exact", report.to_json()
    assert report.info["threads"] == 2  # the verifier reproduced the recorded thread count
    report = verify(two_thread_proof, public_key=str(keys["pub"]),
                    options=VerifyOptions(segments=4, seed=0, threads=1, mode="tolerance"))
    assert report.verdict == "verified" and report.info["mode"] == "tolerance", report.to_json()
    assert any("threads" in m for m in report.info["environment_mismatches"])


def test_a_stack_the_verifier_cannot_reproduce_is_refused_not_loosened(two_thread_proof: Path, keys: dict) -> None:
    from pol.errors import InputError

    with pytest.raises(InputError, match="cannot replay the proof bitwise.*threads.*--mode tolerance"):
        verify(two_thread_proof, public_key=str(keys["pub"]), options=VerifyOptions(segments=4, seed=0, threads=1))


def _state(w: np.ndarray) -> dict:
    return {"model/w": w.astype(np.float32)}


def test_tolerance_rules_on_synthetic_updates() -> None:
    start = np.zeros(100)
    honest = np.linspace(-1, 1, 100)
    tol = Tolerance()
    ok = compare_states("tolerance", _state(start), _state(honest * (1 + 1e-4)), _state(honest), b"", tol)
    assert ok.passed and ok.distance < 1e-3
    tiny = compare_states("tolerance", _state(start), _state(honest * 0.01), _state(honest), b"", tol)
    assert not tiny.passed and "recorded update" in tiny.detail  # infinitesimal update
    rotated = compare_states("tolerance", _state(start), _state(np.roll(honest, 7)), _state(honest), b"", tol)
    assert not rotated.passed and "relative distance" in rotated.detail
    exact = compare_states("exact", _state(start), _state(honest), _state(honest * (1 + 1e-7)), b"x" * 32, tol)
    assert not exact.passed
