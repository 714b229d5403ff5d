"""The pipeline's final stage weights, concatenated, equal single-process training bitwise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest


def pipeline_weights(run: Path) -> tuple[object, dict[str, np.ndarray]]:
    from pol.split.proof import run_final_weights

    return run_final_weights(run)


def reference(plan: object) -> dict[str, np.ndarray]:
    from pol.split.data import training_columns
    from pol.split.reference import train_reference

    x, y = training_columns(plan.data["spec"], plan.data["kwargs"])  # type: ignore[attr-defined]
    return train_reference(plan, x, y)  # type: ignore[arg-type]


@pytest.mark.parametrize("run_fixture", ["mlp_run", "cnn_u_run"])
def test_pipeline_weights_equal_the_single_process_run_bitwise(run_fixture: str, request: pytest.FixtureRequest) -> None:
    plan, weights = pipeline_weights(request.getfixturevalue(run_fixture))
    expected = reference(plan)
    assert sorted(weights) == sorted(expected)
    assert set(weights) >= {"stage0.fc1.weight", "stage2.fc3.bias"} or "stage0.bn1.running_mean" in weights
    for name in expected:
        assert weights[name].dtype == expected[name].dtype
        assert np.array_equal(weights[name], expected[name]), name


def test_the_comparison_sees_a_different_schedule(mlp_run: Path) -> None:
    """Negative control: one micro-batch per step instead of two changes the weights, so the
    bitwise comparison above would catch a pipeline that ran another schedule."""
    plan, weights = pipeline_weights(mlp_run)
    other = reference(dataclasses.replace(plan, micro_batches=1))
    assert any(not np.array_equal(weights[k], other[k]) for k in other)


def test_dropout_is_seeded_per_stage_and_micro_batch(cnn_u_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """digits-cnn's dropout replays only because every stage forward reseeds from
    (seed, stage, step, micro-batch): shifting only those forward seeds changes the weights, so
    the equality above does check that the pipeline seeded its dropout as the plan says."""
    import pol.split.reference as ref
    from pol.hashing import derive_seed

    plan, weights = pipeline_weights(cnn_u_run)

    def shifted(seed: int, label: str, *counters: int) -> int:
        return derive_seed(seed, label, *counters) + (1 if label == "split-step" else 0)

    monkeypatch.setattr(ref, "derive_seed", shifted)
    other = reference(plan)
    assert any(not np.array_equal(weights[k], other[k]) for k in other)
