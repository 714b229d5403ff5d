"""The long-run compact-ratio extrapolation in scripts/bench_storage.py."""

from __future__ import annotations

import pytest

from scripts.bench_storage import ANCHOR, long_run_compact_ratio


def test_equal_anchor_and_delta_sizes_give_one_in_k() -> None:
    ratio = long_run_compact_ratio([1000, 1000], [1000], keyframe=1000, overhead=0.0, indices_per_ckpt=0.0)
    assert ratio == pytest.approx(1 / ANCHOR)


def test_costlier_anchors_and_shared_indices_raise_the_ratio() -> None:
    base = long_run_compact_ratio([1000], [1000], keyframe=1000, overhead=0.0, indices_per_ckpt=0.0)
    costly = long_run_compact_ratio([1000], [1100], keyframe=1000, overhead=0.0, indices_per_ckpt=0.0)
    indexed = long_run_compact_ratio([1000], [1000], keyframe=1000, overhead=0.0, indices_per_ckpt=50.0)
    assert base is not None and costly is not None and indexed is not None
    assert costly > base and indexed > base          # both proofs store every step's indices
    assert long_run_compact_ratio([], [1000], keyframe=1, overhead=0, indices_per_ckpt=0) is None
