"""One pass over the stored checkpoints: digests, recorded steps and LRs, update sizes.

Decoding is the costly part of reading a proof, so the integrity checks share this scan.
The update size of segment j is ||W_{j+1} - W_j|| divided by the mean committed learning
rate over its steps: honest segments have comparable sizes, while a forged jump to stolen
weights stands out, and committing a larger LR for some segments does not make them look
larger. The verifier always replays the largest few (see verifier.sampling).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pol.proof_file import ProofReader
from pol.schedule import lr_at
from pol.state import OPTIM_STATE, State, model_weights


@dataclass
class CheckpointScan:
    digest_mismatch: list[int] = field(default_factory=list)
    recorded_step: dict[int, int | None] = field(default_factory=dict)
    recorded_lr: dict[int, float | None] = field(default_factory=dict)
    has_optimizer_state: dict[int, bool] = field(default_factory=dict)
    update_size: dict[int, float] = field(default_factory=dict)   # segment j -> normalised size


def flat_weights(state: State) -> np.ndarray:
    weights = model_weights(state)
    parts = [np.asarray(weights[k], dtype=np.float64).ravel() for k in sorted(weights)
             if np.asarray(weights[k]).dtype.kind == "f"]
    return np.concatenate(parts) if parts else np.zeros(0)


def scan_checkpoints(reader: ProofReader) -> CheckpointScan:
    scan = CheckpointScan()
    plan, steps = reader.plan, reader.checkpoint_steps
    previous: tuple[int, np.ndarray] | None = None
    for i in reader.stored_checkpoints:
        state = reader.checkpoint_state(i)
        if i >= reader.num_checkpoints or reader.stored_state_digest(i) != reader.state_digests[i]:
            scan.digest_mismatch.append(i)
        step = state.get("meta/step")
        lr = state.get("optim/lr")
        scan.recorded_step[i] = int(step) if step is not None and np.size(step) == 1 else None
        scan.recorded_lr[i] = float(lr) if lr is not None and np.size(lr) == 1 else None
        scan.has_optimizer_state[i] = any(k.startswith(OPTIM_STATE) for k in state)
        flat = flat_weights(state)
        if previous is not None and previous[0] == i - 1 and previous[1].shape == flat.shape and i < len(steps):
            lo, hi = int(steps[i - 1]), int(steps[i])
            mean_lr = float(np.mean([lr_at(plan.lr_schedule, t) for t in range(lo, hi)])) if hi > lo else 0.0
            size = float(np.linalg.norm(flat - previous[1]))
            scan.update_size[i - 1] = size / mean_lr if mean_lr > 0 else (np.inf if size > 0 else 0.0)
        previous = (i, flat)
    return scan
