"""Workers that fail rather than attack: a crash or a hang mid-round (real processes: the
process exits, or stops answering), and malformed submissions of several kinds."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from pol.workers.behaviour import RoundContext
from scripts.attacks_workers.attacks import Attack

FAIL_ROUND = 1   # rounds before this one are honest


class FailsMidRun(Attack):
    """Honest before FAIL_ROUND; from then on ``fail(ctx)`` decides what (if anything) is sent."""

    def malicious_in(self, round_index: int) -> bool:
        return round_index >= FAIL_ROUND

    def __call__(self, ctx: RoundContext) -> bytes | None:
        if ctx.round < FAIL_ROUND:
            return ctx.prove_result(ctx.honest())
        return self.fail(ctx)

    def fail(self, ctx: RoundContext) -> bytes | None:
        raise NotImplementedError


class Crash(FailsMidRun):
    """Round 1: trains half the local steps, then the process exits (os._exit)."""

    def fail(self, ctx: RoundContext) -> bytes | None:
        ctx.trainer.run(ctx.global_weights, ctx.worker, ctx.round, indices=ctx.indices[: ctx.plan.local_steps // 2])
        os._exit(17)


class Hang(FailsMidRun):
    """Round 1: stops answering (sleeps far longer than any round timeout)."""

    def fail(self, ctx: RoundContext) -> bytes | None:
        time.sleep(3600)
        return None


@dataclass(frozen=True)
class Malformed(Attack):
    """Round 0 onwards: a submission broken in one way (``kind``)."""

    kind: str = "garbage"

    def __call__(self, ctx: RoundContext) -> bytes:
        kind = self.kind
        if kind == "garbage":
            return os.urandom(1000)
        if kind == "truncated":
            return ctx.prove_result(ctx.honest())[:-100]
        if kind == "shape":
            return ctx.prove({k: np.zeros((2, 2), np.float32) for k in ctx.global_weights})
        if kind == "nan":
            return ctx.prove({k: np.full_like(v, np.nan) for k, v in ctx.global_weights.items()})
        if kind == "oversized":  # more bytes than the coordinator accepts in one message
            return bytes(ctx.memory.get("oversized_bytes", 2 << 20))
        if kind == "signature":
            from nacl.signing import SigningKey

            ctx_other = RoundContext(ctx.plan, ctx.worker, ctx.round, ctx.global_weights, ctx.global_digest,
                                     ctx.trainer, SigningKey.generate(), ctx.memory)
            return ctx_other.prove_result(ctx.honest())
        if kind == "impersonation":  # claims to be another worker
            other = next(w for w in ctx.plan.worker_ids if w != ctx.worker)
            ctx_other = RoundContext(ctx.plan, other, ctx.round, ctx.global_weights, ctx.global_digest,
                                     ctx.trainer, ctx.key, ctx.memory)
            return ctx_other.prove_result(ctx.trainer.run(ctx.global_weights, other, ctx.round))
        raise ValueError(kind)
