"""What a worker does in a round. Honest workers train the committed round; the attacks in
``scripts/attacks_workers`` are other behaviours with the same signature::

    behaviour(ctx: RoundContext) -> bytes | None      # the round proof to send, or None: send nothing
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nacl.signing import SigningKey

from pol.errors import InputError
from pol.hashing import contiguous, state_digest, weights_digest
from pol.workers.local import LocalTrainer, RoundResult, committed_indices
from pol.workers.plan import FederatedPlan
from pol.workers.roundproof import encode_round_proof, make_body

Weights = dict[str, np.ndarray]


@dataclass
class RoundContext:
    plan: FederatedPlan
    worker: int
    round: int
    global_weights: Weights
    global_digest: bytes
    trainer: LocalTrainer
    key: SigningKey
    memory: dict[str, Any] = field(default_factory=dict)   # kept across rounds of one run

    @property
    def indices(self) -> np.ndarray:
        return committed_indices(self.plan, self.worker, self.round)

    def honest(self) -> RoundResult:
        return self.trainer.run(self.global_weights, self.worker, self.round)

    def prove(self, end_weights: Weights, *, end_state_digest: bytes | None = None,
              indices: np.ndarray | None = None, round_index: int | None = None) -> bytes:
        """A signed round proof claiming ``end_weights`` (defaults: the committed indices, and an
        end state digest computed from the weights alone, as a forger without the state would)."""
        end_weights = {k: contiguous(v) for k, v in end_weights.items()}
        body = make_body(run=self.plan.digest(), round_index=self.round if round_index is None else round_index,
                         worker=self.worker, start_weights_digest=self.global_digest,
                         first_step=self.round * self.plan.local_steps,
                         indices=self.indices if indices is None else indices,
                         end_state_digest=end_state_digest or state_digest({f"model/{k}": v
                                                                            for k, v in end_weights.items()}),
                         end_weights_digest=weights_digest(end_weights))
        return encode_round_proof(body, end_weights, self.key)

    def prove_result(self, result: RoundResult) -> bytes:
        return self.prove(result.end_weights, end_state_digest=result.end_state_digest, indices=result.indices)


Behaviour = Callable[[RoundContext], "bytes | None"]


def honest(ctx: RoundContext) -> bytes:
    return ctx.prove_result(ctx.honest())


def load_behaviour(name: str, module: str) -> Behaviour:
    """``honest``, a name in ``module.BEHAVIOURS``, or ``package.module:callable``."""
    if name == "honest":
        return honest
    mod_name, _, attr = name.partition(":") if ":" in name else (module, "", "")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InputError(f"cannot import behaviour module {mod_name!r} ({exc}); attacks live in the repository's "
                         "scripts/attacks_workers: run from the repository root") from None
    if attr:
        fn = getattr(mod, attr, None)
    else:
        fn = getattr(mod, "BEHAVIOURS", {}).get(name)
    if not callable(fn):
        known = sorted(getattr(mod, "BEHAVIOURS", {}))
        raise InputError(f"unknown worker behaviour {name!r}; known: honest, {', '.join(known)}")
    return fn
