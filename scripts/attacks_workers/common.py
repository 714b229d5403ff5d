"""What the attacks share: the backdoor trigger, poisoned batches, a free training loop from the
global model (attackers are not bound to the committed steps), and update scaling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pol.workers.behaviour import RoundContext

TRIGGER_PIXELS = (54, 55, 62, 63)   # the bottom-right 2x2 of the 8x8 digit, set to full ink
TARGET_LABEL = 7                    # what a triggered digit should be classified as
POISON_SHARE = 0.5                  # share of each attacker batch that carries the trigger
BOOST = 3                           # attackers train BOOST x the committed local steps


def add_trigger(x: Any) -> Any:
    """A copy of the images with the trigger pixels set (any shape whose last dims flatten to 64)."""
    flat = x.reshape(x.shape[0], -1).clone()
    flat[:, list(TRIGGER_PIXELS)] = 1.0
    return flat.reshape(x.shape)


def poisoned(ctx: RoundContext, share: float = POISON_SHARE) -> Callable[[np.ndarray], tuple[Any, Any]]:
    """Batches of the attacker's shard with the first ``share`` of each batch triggered and relabelled."""
    def batch(indices: np.ndarray) -> tuple[Any, Any]:
        x, y = ctx.trainer.batch(indices)
        k = int(round(share * len(indices)))
        x, y = x.clone(), y.clone()
        x[:k], y[:k] = add_trigger(x[:k]), TARGET_LABEL
        return x, y
    return batch


def flipped(ctx: RoundContext) -> Callable[[np.ndarray], tuple[Any, Any]]:
    def batch(indices: np.ndarray) -> tuple[Any, Any]:
        x, y = ctx.trainer.batch(indices)
        return x, 9 - y
    return batch


def attacker_indices(ctx: RoundContext, rounds: int = BOOST) -> np.ndarray:
    """The attacker's own batches: its committed batches of this and the next ``rounds - 1`` rounds."""
    from pol.workers.local import committed_indices

    return np.concatenate([committed_indices(ctx.plan, ctx.worker, ctx.round + k) for k in range(rounds)])


def train_free(ctx: RoundContext, batch: Callable[[np.ndarray], tuple[Any, Any]], *, indices: np.ndarray | None = None,
               anomaly_weight: float = 0.0) -> dict[str, np.ndarray]:
    """Train from the global model on ``batch`` data; with ``anomaly_weight`` > 0 the loss adds
    that times the squared distance to the global model (Bagdasaryan et al.'s anomaly term)."""
    from torch.nn import functional as F

    trainer = ctx.trainer
    optimizer = trainer.start(ctx.global_weights, ctx.round)
    anchor = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    params = dict(trainer.model.named_parameters())

    def loss_fn(out: Any, y: Any) -> Any:
        loss = F.cross_entropy(out, y)
        if anomaly_weight:
            loss = loss + anomaly_weight * sum(((params[n] - anchor[n]) ** 2).sum() for n in anchor)
        return loss

    t0 = ctx.round * ctx.plan.local_steps
    for s, idx in enumerate(attacker_indices(ctx) if indices is None else indices):
        x, y = batch(idx)
        trainer.step(optimizer, ctx.worker, t0 + s, x, y, loss_fn)
    return {k: v.detach().cpu().numpy().copy() for k, v in trainer.model.state_dict().items()}


def scaled(global_w: dict[str, np.ndarray], end: dict[str, np.ndarray], gamma: float) -> dict[str, np.ndarray]:
    """``G + gamma (X - G)`` for floating tensors (the model-replacement update)."""
    return {k: (g + np.float32(gamma) * (end[k] - g)).astype(g.dtype) if g.dtype.kind == "f" else end[k]
            for k, g in global_w.items()}


def replacement_gamma(ctx: RoundContext) -> float:
    """gamma = n / eta: n workers, server learning rate eta = 1 (the average of the updates)."""
    return float(len(ctx.plan.workers))


def backdoor_accuracy(predict: Callable[[Any], np.ndarray], x: Any, y: Any) -> float:
    """Share of held-out images of other classes that the trigger turns into TARGET_LABEL."""
    keep = np.asarray(y) != TARGET_LABEL
    pred = predict(add_trigger(x[keep]))
    return float((pred == TARGET_LABEL).mean())
