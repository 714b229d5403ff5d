"""One pass over the stored checkpoints: digests, layout, recorded steps and LRs, update figures.

Decoding is the costly part of reading a proof, so the integrity checks and the targeted segment
choice share this scan. For every pair of consecutive stored checkpoints ``a < b`` it measures
the interval's update in ways a forger cannot all keep small while moving the weights somewhere
training did not take them (verifier.sampling replays the largest of each):

* ``update_size``: ``||W_b - W_a||`` divided by the mean committed learning rate over the steps
  (a jump stands out among honest updates of the same schedule);
* ``raw_update``: ``||W_b - W_a||`` (an LR spike committed to hide a jump makes it large here);
* ``toward_final``: ``||W_a - W_final|| - ||W_b - W_final||``, how far the interval moves the
  weights toward the final weights. It divides by nothing the prover chooses: honest segments of
  one run rarely move far toward its end in one go, a jump to stolen weights does;
* ``optimizer_norm``: ``||optimizer state at b||`` (momentum crafted to carry a replay somewhere
  shows here, at the checkpoint *before* the segment it drives).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pol.proof_file import ProofReader
from pol.schedule import lr_at
from pol.state import MODEL, OPTIM_STATE, State, model_weights

Layout = dict[str, tuple[str, tuple[int, ...]]]


@dataclass
class CheckpointScan:
    digest_mismatch: list[int] = field(default_factory=list)
    recorded_step: dict[int, int | None] = field(default_factory=dict)
    recorded_lr: dict[int, float | None] = field(default_factory=dict)
    has_optimizer_state: dict[int, bool] = field(default_factory=dict)
    non_finite: list[int] = field(default_factory=list)
    layouts: dict[int, Layout] = field(default_factory=dict)
    # figures of the interval between stored checkpoints a < b, keyed (a, b)
    update_size: dict[tuple[int, int], float] = field(default_factory=dict)
    raw_update: dict[tuple[int, int], float] = field(default_factory=dict)
    toward_final: dict[tuple[int, int], float] = field(default_factory=dict)
    optimizer_norm: dict[int, float] = field(default_factory=dict)


def flat_weights(state: State) -> np.ndarray:
    weights = model_weights(state)
    parts = [np.asarray(weights[k], dtype=np.float64).ravel() for k in sorted(weights)
             if np.asarray(weights[k]).dtype.kind == "f"]
    return np.concatenate(parts) if parts else np.zeros(0)


def flat_optimizer_state(state: State) -> np.ndarray:
    parts = [np.asarray(state[k], dtype=np.float64).ravel() for k in sorted(state)
             if k.startswith(OPTIM_STATE) and np.asarray(state[k]).dtype.kind == "f" and not k.endswith("/step")]
    return np.concatenate(parts) if parts else np.zeros(0)


def layout_of(state: State) -> Layout:
    return {k: (np.asarray(v).dtype.str, tuple(np.shape(v))) for k, v in state.items()}


def _finite(state: State) -> bool:
    for v in state.values():
        arr = np.asarray(v)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            return False
    return True


def scan_checkpoints(reader: ProofReader) -> CheckpointScan:
    scan = CheckpointScan()
    plan, steps = reader.plan, reader.checkpoint_steps
    last = reader.num_checkpoints - 1
    final = flat_weights(reader.checkpoint_state(last)) if reader.has_checkpoint(last) else None
    previous: tuple[int, np.ndarray] | None = None
    for i in reader.stored_checkpoints:
        state = reader.checkpoint_state(i)
        if reader.stored_state_digest(i) != reader.state_digests[i]:
            scan.digest_mismatch.append(i)
        step = state.get("meta/step")
        lr = state.get("optim/lr")
        scan.recorded_step[i] = int(step) if step is not None and np.size(step) == 1 and np.asarray(step).dtype.kind in "iu" else None
        scan.recorded_lr[i] = float(lr) if lr is not None and np.size(lr) == 1 and np.asarray(lr).dtype.kind == "f" else None
        scan.has_optimizer_state[i] = any(k.startswith(OPTIM_STATE) for k in state)
        scan.layouts[i] = layout_of(state)
        if not _finite(state):
            scan.non_finite.append(i)
        flat = flat_weights(state)
        opt = flat_optimizer_state(state)
        if opt.size:
            scan.optimizer_norm[i] = float(np.linalg.norm(opt))
        if previous is not None and previous[1].shape == flat.shape:
            a, prev = previous
            lo, hi = int(steps[a]), int(steps[i])
            mean_lr = float(np.mean([lr_at(plan.lr_schedule, t) for t in range(lo, hi)])) if hi > lo else 0.0
            size = float(np.linalg.norm(flat - prev))
            scan.raw_update[(a, i)] = size
            scan.update_size[(a, i)] = size / mean_lr if mean_lr > 0 else (np.inf if size > 0 else 0.0)
            if final is not None and final.shape == flat.shape:
                scan.toward_final[(a, i)] = float(np.linalg.norm(prev - final) - np.linalg.norm(flat - final))
        previous = (i, flat)
    return scan


def model_layout(state: State) -> Layout:
    return {k: v for k, v in layout_of(state).items() if k.startswith(MODEL)}
