"""One worker's round of local training: the same code trains (worker) and replays (coordinator,
third-party verifier), so that replay on the same stack is bitwise.

A round starts from the global weights with a fresh optimizer (the plan's type and hparams);
local step ``s`` is worker step ``t = round * local_steps + s``: learning rate
``lr_at(schedule, t)``, ``torch.manual_seed(derive_seed(seed, "workers-step", worker, t))``,
then :func:`pol.training.standard_step` on the committed batch. The end state is
:func:`pol.state.capture` without its ``rng/`` entries (the RNG is reseeded every step).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pol.errors import short_reason
from pol.hashing import derive_seed, state_digest, weights_digest
from pol.schedule import lr_at
from pol.state import MODEL, State, capture, model_weights, restore
from pol.tasks import build_model
from pol.training import loss_function, optimizer_class, standard_step
from pol.workers.messages import WorkersFormatError
from pol.workers.plan import FederatedPlan
from pol.workers.shards import round_indices

Weights = dict[str, np.ndarray]
BatchFn = Callable[[np.ndarray], tuple[Any, Any]]


@dataclass(frozen=True)
class RoundResult:
    indices: np.ndarray            # (local_steps, batch_size) data set indices
    end_state: State               # captured, without rng/*
    end_weights: Weights           # the model part, named as in state_dict()

    @property
    def end_state_digest(self) -> bytes:
        return state_digest(self.end_state)

    @property
    def end_weights_digest(self) -> bytes:
        return weights_digest(self.end_weights)


def committed_indices(plan: FederatedPlan, worker_id: int, round_index: int) -> np.ndarray:
    shard = np.asarray(plan.worker(worker_id).shard, dtype=np.int64)
    return round_indices(plan.seed, worker_id, shard, plan.batch_size, plan.local_steps, round_index)


class LocalTrainer:
    """The plan's model built once per process, its data held once on the device."""

    def __init__(self, plan: FederatedPlan, dataset: Any, device: str = "cpu", model_spec: str | None = None):
        import torch

        self.plan, self.device, self._torch = plan, device, torch
        self.model = build_model(model_spec or plan.model["spec"], plan.model.get("kwargs") or {}).to(device)
        self.model.train()
        self.names = [n for n, _ in self.model.named_parameters()]
        self.loss_fn = loss_function(plan.loss)
        self.opt_cls = optimizer_class(plan.optimizer["type"])
        tensors = getattr(dataset, "tensors", None)
        if tensors is None or len(tensors) != 2:
            raise WorkersFormatError("worker data must be a two-tensor TensorDataset (features, labels)")
        self.x, self.y = (t.to(device) for t in tensors)

    def batch(self, indices: np.ndarray) -> tuple[Any, Any]:
        idx = self._torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(self.device)
        return self.x[idx], self.y[idx]

    def start(self, global_weights: Mapping[str, np.ndarray], round_index: int) -> Any:
        """Load the global weights; return a fresh optimizer at the round's first learning rate."""
        t0 = round_index * self.plan.local_steps
        try:
            optimizer = self.opt_cls(self.model.parameters(), lr=lr_at(self.plan.lr_schedule, t0),
                                     **self.plan.optimizer.get("hparams", {}))
        except (TypeError, ValueError) as exc:
            raise WorkersFormatError(f"the plan's optimizer hparams are refused: {short_reason(exc)}") from None
        start: State = {MODEL + k: v for k, v in global_weights.items()}
        start["optim/lr"] = np.asarray(lr_at(self.plan.lr_schedule, t0), dtype=np.float64)
        restore(self.model, optimizer, start, self.names, self.device)
        return optimizer

    def step(self, optimizer: Any, worker_id: int, t: int, x: Any, y: Any,
             loss_fn: Callable[..., Any] | None = None) -> None:
        optimizer.param_groups[0]["lr"] = lr_at(self.plan.lr_schedule, t)
        self._torch.manual_seed(derive_seed(self.plan.seed, "workers-step", worker_id, t))
        standard_step(self.model, optimizer, loss_fn or self.loss_fn, x, y)

    def finish(self, optimizer: Any, round_index: int, indices: np.ndarray) -> RoundResult:
        state = capture(self.model, optimizer, (round_index + 1) * self.plan.local_steps, self.names)
        state = {k: v for k, v in state.items() if not k.startswith("rng/")}
        return RoundResult(np.asarray(indices, dtype=np.int64), state, model_weights(state))

    def run(self, global_weights: Mapping[str, np.ndarray], worker_id: int, round_index: int,
            indices: np.ndarray | None = None, batch: BatchFn | None = None) -> RoundResult:
        """Train (or replay) one round. ``indices`` default to the committed ones; ``batch``
        (attacks only) substitutes the data a batch is made of."""
        if indices is None:
            indices = committed_indices(self.plan, worker_id, round_index)
        optimizer = self.start(global_weights, round_index)
        t0 = round_index * self.plan.local_steps
        for s, batch_indices in enumerate(indices):
            x, y = (batch or self.batch)(batch_indices)
            self.step(optimizer, worker_id, t0 + s, x, y)
        return self.finish(optimizer, round_index, indices)
