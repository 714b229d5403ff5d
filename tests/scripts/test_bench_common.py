"""The pure helpers behind the performance benchmarks (scripts/_bench_common.py)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts._bench_common import (  # noqa: E402
    emit,
    format_table,
    goal,
    interleaved_order,
    median_paired_ratio,
    paired_ratios,
)


def test_paired_ratios_divide_pair_by_pair() -> None:
    assert paired_ratios([11.0, 21.0, 9.9], [10.0, 20.0, 9.0]) == pytest.approx([1.1, 1.05, 1.1])


def test_median_paired_ratio_ignores_one_disturbed_pair() -> None:
    # the third pair ran while something else used the machine: its ratio is an outlier
    assert median_paired_ratio([10.1, 20.2, 60.0], [10.0, 20.0, 20.0]) == pytest.approx(1.01)


def test_median_paired_ratio_cancels_drift() -> None:
    # the machine slows down 2x over the run; every pair still shows 2% overhead
    baseline = [10.0, 14.0, 20.0]
    treated = [b * 1.02 for b in baseline]
    assert median_paired_ratio(treated, baseline) == pytest.approx(1.02)


def test_median_paired_ratio_even_count_averages_middle_pair() -> None:
    assert median_paired_ratio([1.0, 1.2, 1.4, 3.0], [1.0, 1.0, 1.0, 1.0]) == pytest.approx(1.3)


@pytest.mark.parametrize("treated, baseline", [([1.0], [1.0, 2.0]), ([], []), ([1.0], [0.0])])
def test_paired_ratios_reject_bad_input(treated: list[float], baseline: list[float]) -> None:
    with pytest.raises(ValueError):
        paired_ratios(treated, baseline)


def test_interleaved_order_alternates_who_goes_first() -> None:
    assert interleaved_order(["r", "u"], 3) == ["r", "u", "u", "r", "r", "u"]
    assert interleaved_order(["a", "b", "c"], 2) == ["a", "b", "c", "c", "b", "a"]


def test_goal() -> None:
    assert goal(1.009, 1.01) == "met"
    assert goal(1.011, 1.01) == "MISSED"
    assert goal(1.8, 1.7, at_most=False) == "met"
    assert goal(1.2, 1.7, at_most=False) == "MISSED"


def test_format_table_pads_columns() -> None:
    text = format_table([["overhead", 1.00912], ["x", "y"]], ["figure", "value"])
    assert text.splitlines() == ["figure    value", "--------  -----", "overhead  1.009", "x         y"]


def test_emit_json_is_one_document(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    emit({"overhead_k10": np.float64(1.02)}, as_json=True, table="unused")
    assert json.loads(out.getvalue()) == {"schema_version": 1, "overhead_k10": 1.02}
