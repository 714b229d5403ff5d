"""Tolerance calibrated from reproduction noise measured on the verifier's own stack.

In tolerance mode the verifier replays one stored segment twice, with two different CPU
thread counts, and measures the relative distance between the two results: how far honest
reproductions of this model and data drift apart on this machine. The threshold is
``clamp(FACTOR * noise, FLOOR, cap)``: tight for models that reproduce closely (an MLP differs
by ~1e-6 across thread counts, so forgers get almost no allowance), wider for chaotic ones
(ResNet-20 with BatchNorm: ~0.02-0.05 at k=10, measured by scripts/calibrate_tolerance.py),
and never above the configured cap. Replaying on another device type than the recording
(GPU proof, CPU verifier) is not calibrated this way: the cap applies, and ``--max-distance``
overrides both.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from verifier.scan import flat_weights
from verifier.segments import SegmentJudge
from verifier.tolerance import Tolerance

FACTOR = 5.0
FLOOR = 0.01


def measure_noise(judge: SegmentJudge, segment: int) -> float | None:
    """Relative distance between two replays of ``segment`` with different thread counts."""
    import torch

    reader = judge.reader
    if not reader.is_complete(segment):
        return None
    start = reader.checkpoint_state(segment)
    lo, hi = int(reader.checkpoint_steps[segment]), int(reader.checkpoint_steps[segment + 1])
    indices = reader.indices(lo, hi)
    threads = torch.get_num_threads()
    alternative = 1 if threads > 1 else 2
    first = flat_weights(judge.replayer.run(start, lo, indices))
    try:
        torch.set_num_threads(alternative)
        second = flat_weights(judge.replayer.run(start, lo, indices))
    finally:
        torch.set_num_threads(threads)
    update = float(np.linalg.norm(first - flat_weights(start)))
    return float(np.linalg.norm(first - second)) / update if update > 0 else None


def calibrated(tolerance: Tolerance, noise: float | None) -> Tolerance:
    if noise is None:
        return tolerance
    return replace(tolerance, max_distance=min(tolerance.max_distance, max(FLOOR, FACTOR * noise)))
