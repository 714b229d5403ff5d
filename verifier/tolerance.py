"""Comparing a replayed checkpoint with the recorded one: bitwise, or within calibrated tolerance.

Tolerance mode compares the model weights and the optimizer state (RNG state may legitimately
differ across stacks). With ``start`` the segment's first checkpoint, ``rec`` the recorded end and
``rep`` the replayed end (flattened floating-point model tensors):

* distance  = ||rep - rec|| / ||rep - start||   (error relative to the honest update)
* progress  = ||rec - start|| / ||rep - start||  (minimum-progress rule: a recorded update much
  smaller than the replayed one is an infinitesimal-update forgery)
* optimizer distance = ||rep_o - rec_o|| / ||rep_o|| over the optimizer state (momentum, Adam
  moments): recorded optimizer state is evidence, not input. Momentum crafted to carry the next
  segment somewhere training would not go differs from what this segment's replay produces.

The segment passes when both distances are at most ``max_distance`` and progress is at least
``min_progress``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pol.hashing import state_digest
from pol.state import State
from verifier.scan import flat_optimizer_state, flat_weights


@dataclass(frozen=True)
class Tolerance:
    max_distance: float = 0.25  # ~5x the worst honest 1-vs-2-thread noise measured (ResNet-20, k=10: 0.047)
    min_progress: float = 0.5


@dataclass(frozen=True)
class Comparison:
    passed: bool
    distance: float
    progress: float
    detail: str


def update_norms(start: State, recorded: State, replayed: State) -> tuple[float, float, float]:
    """(||rep - rec||, ||rep - start||, ||rec - start||) over floating-point model weights."""
    s, rec, rep = (flat_weights(x) for x in (start, recorded, replayed))
    if not (s.shape == rec.shape == rep.shape):
        return float("inf"), 1.0, 0.0
    return float(np.linalg.norm(rep - rec)), float(np.linalg.norm(rep - s)), float(np.linalg.norm(rec - s))


def optimizer_distance(recorded: State, replayed: State) -> float:
    """||rep_o - rec_o|| / ||rep_o|| over the optimizer state (0 when there is none)."""
    rec, rep = flat_optimizer_state(recorded), flat_optimizer_state(replayed)
    if rec.shape != rep.shape:
        return float("inf")
    if not rep.size:
        return 0.0
    return float(np.linalg.norm(rep - rec)) / max(float(np.linalg.norm(rep)), 1e-30)


def compare_states(mode: str, start: State, recorded: State, replayed: State, recorded_digest: bytes,
                   tol: Tolerance) -> Comparison:
    if mode == "exact" and state_digest(replayed) == recorded_digest:
        return Comparison(True, 0.0, 1.0, "")  # bitwise equal: no norms needed
    err, honest, claimed = update_norms(start, recorded, replayed)
    scale = max(honest, 1e-30)
    distance, progress = err / scale, claimed / scale
    if mode == "exact":
        return Comparison(False, distance, progress, f"not bitwise equal (relative distance {distance:.3g})")
    problems = []
    if not distance <= tol.max_distance:
        problems.append(f"relative distance {distance:.3g} > {tol.max_distance}")
    opt_distance = optimizer_distance(recorded, replayed)
    if not opt_distance <= tol.max_distance:
        problems.append(f"optimizer state differs from the replayed one by {opt_distance:.3g} > {tol.max_distance}")
        distance = max(distance, opt_distance)
    if not progress >= tol.min_progress:
        problems.append(f"recorded update is {progress:.3g} of the replayed one (< {tol.min_progress})")
    return Comparison(not problems, distance, progress, "; ".join(problems))
