"""Drift check (tolerance mode): are the replay errors steering toward the final weights?

Tolerance mode accepts each segment whose recorded end lies within a relative distance of the
replayed end. A forger can spend that allowance on every segment, nudging the trajectory
toward stolen weights ("tolerance drift"). Honest reproduction noise (another thread count,
another device) has no reason to point at the run's own final weights, so for each replayed
segment j we measure

    toward_j = cos(recorded_j - replayed_j, final - replayed_j)

and reject when the mean over the replayed segments exceeds ``MAX_MEAN_TOWARD``. A forger who
hides the steering under orthogonal noise must spend most of its allowance on the noise.
"""

from __future__ import annotations

import numpy as np

from pol.state import State
from verifier.report import Check
from verifier.scan import flat_weights

MAX_MEAN_TOWARD = 0.3


def error_toward_final(recorded: State, replayed: State, final: np.ndarray | None) -> float:
    if final is None:
        return 0.0
    rec, rep = flat_weights(recorded), flat_weights(replayed)
    if rec.shape != rep.shape or rep.shape != final.shape:
        return 0.0
    err, target = rec - rep, final - rep
    denom = float(np.linalg.norm(err) * np.linalg.norm(target))
    return float(err @ target) / denom if denom > 0 else 0.0


def drift_check(values: list[float]) -> Check:
    if not values:
        return Check("drift", None, "no segments", "no replayed segment to measure")
    mean = float(np.mean(values))
    figure = f"mean cos(error, final - replayed) {mean:+.3f} over {len(values)} segment(s) (limit {MAX_MEAN_TOWARD})"
    if mean > MAX_MEAN_TOWARD:
        return Check("drift", False, figure, "replay errors consistently point toward the final weights: "
                     "checkpoints steered within the tolerance (tolerance-drift forgery)")
    return Check("drift", True, figure, "replay errors do not steer toward the final weights")
