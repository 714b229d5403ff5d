"""Byzantine worker behaviours. Each is a small class: ``__call__(ctx)`` returns the round proof
to send, ``malicious_in(round)`` says whether that round's submission deviates from the honest
one (the benchmark's ground truth). All sign with the worker's own key and claim the committed
batches: what they cannot produce is an end state that the committed training replays to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pol.workers.behaviour import RoundContext
from scripts.attacks_workers.common import (
    backdoor_accuracy,
    flipped,
    poisoned,
    replacement_gamma,
    scaled,
    train_free,
)


@dataclass(frozen=True)
class Attack:
    name: str
    summary: str

    def malicious_in(self, round_index: int) -> bool:
        return True

    def success(self, predict: Callable[[Any], np.ndarray], x: Any, y: Any) -> float | None:
        """How well the attack worked on a final model (None: judged by accuracy alone)."""
        return None


class Backdoor(Attack):
    """Attacks whose success is the backdoor: the share of triggered held-out digits of other
    classes that the model classifies as the target label."""

    def success(self, predict: Callable[[Any], np.ndarray], x: Any, y: Any) -> float | None:
        return backdoor_accuracy(predict, x, y)


class ModelReplacement(Backdoor):
    """Bagdasaryan et al.: train a backdoored model X, submit G + gamma (X - G), gamma = n / eta."""

    def __call__(self, ctx: RoundContext) -> bytes:
        backdoored = train_free(ctx, poisoned(ctx))
        return ctx.prove(scaled(ctx.global_weights, backdoored, replacement_gamma(ctx)))


class ConstrainAndScale(Backdoor):
    """Backdoor training with the anomaly term (stay close to G), then scaled by gamma = n / eta."""

    def __call__(self, ctx: RoundContext) -> bytes:
        backdoored = train_free(ctx, poisoned(ctx), anomaly_weight=0.05)
        return ctx.prove(scaled(ctx.global_weights, backdoored, replacement_gamma(ctx)))


class NaiveBackdoor(Backdoor):
    """Trains the committed steps on its shard with triggered, relabelled samples mixed in."""

    def __call__(self, ctx: RoundContext) -> bytes:
        result = ctx.trainer.run(ctx.global_weights, ctx.worker, ctx.round, batch=poisoned(ctx))
        return ctx.prove_result(result)


class LabelFlipping(Attack):
    """Trains the committed steps on its shard with every label y turned into 9 - y."""

    def __call__(self, ctx: RoundContext) -> bytes:
        return ctx.prove_result(ctx.trainer.run(ctx.global_weights, ctx.worker, ctx.round, batch=flipped(ctx)))


class FreeRiderZero(Attack):
    """Trains nothing and returns the global model (a zero update)."""

    def __call__(self, ctx: RoundContext) -> bytes:
        return ctx.prove(ctx.global_weights)


class FreeRiderNoise(Attack):
    """Trains nothing and returns the global model plus Gaussian noise (std 0.01)."""

    def __call__(self, ctx: RoundContext) -> bytes:
        rng = np.random.default_rng([ctx.plan.seed, ctx.worker, ctx.round])
        noisy = {k: (v + rng.normal(0, 0.01, v.shape)).astype(v.dtype) if v.dtype.kind == "f" else v
                 for k, v in ctx.global_weights.items()}
        return ctx.prove(noisy)


class FreeRiderCopy(Attack):
    """Returns another worker's update as its own (simulated here by computing that worker's round:
    what a free-rider sniffing its neighbour would have)."""

    def __call__(self, ctx: RoundContext) -> bytes:
        ids = ctx.plan.worker_ids
        victim = ids[(ids.index(ctx.worker) + 1) % len(ids)]
        copied = ctx.trainer.run(ctx.global_weights, victim, ctx.round)
        return ctx.prove(copied.end_weights, end_state_digest=copied.end_state_digest)


class StaleUpdate(Attack):
    """Trains in round 0, then resubmits that update on every later global model (G_r + Δ_0)."""

    def malicious_in(self, round_index: int) -> bool:
        return round_index > 0

    def __call__(self, ctx: RoundContext) -> bytes:
        if "delta" not in ctx.memory:
            result = ctx.honest()
            ctx.memory["delta"] = {k: result.end_weights[k] - ctx.global_weights[k] for k in result.end_weights}
            return ctx.prove_result(result)
        return ctx.prove({k: (g + ctx.memory["delta"][k]).astype(g.dtype) for k, g in ctx.global_weights.items()})


class Sybil(Backdoor):
    """All sybil identities submit the same backdoored update, trained from G on the data set's
    first 256 samples (known to all of them) and scaled by n / f, so that together they replace G."""

    def __call__(self, ctx: RoundContext) -> bytes:
        common = np.arange(256, dtype=np.int64).reshape(-1, ctx.plan.batch_size)
        steps = np.concatenate([common] * 2)
        backdoored = train_free(ctx, poisoned(ctx), indices=steps)
        f = max(1, int(ctx.plan.aggregation.get("f", 1)))
        return ctx.prove(scaled(ctx.global_weights, backdoored, replacement_gamma(ctx) / f))
