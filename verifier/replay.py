"""Replay of training segments: data loaded once, model and optimizer built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pol.errors import ProofFormatError, short_reason
from pol.hashing import derive_seed
from pol.plan import Plan
from pol.schedule import lr_at
from pol.state import State, capture, restore
from pol.tasks import build_model
from pol.training import loss_function, optimizer_class, standard_step


class BatchSource:
    """Gives the (x, y) batch for a list of indices, from tensors held once on the device."""

    def __init__(self, dataset: Any, device: str):
        import torch

        self._dataset = dataset
        tensors = getattr(dataset, "tensors", None)
        self._tensors = tuple(t.to(device) for t in tensors) if tensors is not None and len(tensors) == 2 else None
        self._device = device
        self._torch = torch

    def batch(self, indices: np.ndarray) -> tuple[Any, Any]:
        torch = self._torch
        if self._tensors is not None:
            idx = torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(self._device)
            return self._tensors[0][idx], self._tensors[1][idx]
        from torch.utils.data import default_collate

        x, y = default_collate([self._dataset[int(i)] for i in indices])
        return x.to(self._device), y.to(self._device)


@dataclass
class Replayer:
    """Runs the committed training step over recorded indices, from a checkpoint."""

    plan: Plan
    dataset: Any
    device: str = "cpu"
    model_spec: str | None = None

    def __post_init__(self) -> None:
        import torch

        spec = self.model_spec or self.plan.model["spec"]
        self.model = build_model(spec, self.plan.model.get("kwargs") or {}).to(self.device)
        self.model.train()
        opt_cls = optimizer_class(self.plan.optimizer["type"])
        hparams = dict(self.plan.optimizer.get("hparams") or {})
        try:
            self.optimizer = opt_cls(self.model.parameters(), lr=lr_at(self.plan.lr_schedule, 0), **hparams)
        except (TypeError, ValueError) as exc:  # hparams come from the (untrusted) plan
            raise ProofFormatError(f"the plan's optimizer hparams are not accepted by {opt_cls.__name__}: "
                                   f"{short_reason(exc)}") from None
        self.names = [n for n, _ in self.model.named_parameters()]
        self.loss_fn = loss_function(self.plan.loss)
        self.batches = BatchSource(self.dataset, self.device)
        self._torch = torch

    def run(self, start_state: State, start_step: int, indices: np.ndarray) -> State:
        """Replay ``len(indices)`` steps from ``start_state``; return the captured end state."""
        torch = self._torch
        restore(self.model, self.optimizer, start_state, self.names, self.device)
        for offset, batch_indices in enumerate(indices):
            t = start_step + offset
            self.optimizer.param_groups[0]["lr"] = lr_at(self.plan.lr_schedule, t)
            torch.manual_seed(derive_seed(self.plan.seed, "step", t))
            x, y = self.batches.batch(batch_indices)
            standard_step(self.model, self.optimizer, self.loss_fn, x, y)
        return capture(self.model, self.optimizer, start_step + len(indices), self.names)

    def mean_loss(self, state: State, indices: np.ndarray, source: BatchSource | None = None) -> float:
        """Mean loss of a model state over batches, without updating it; for the progress check.

        Train-mode forward (BatchNorm uses the batch's own statistics, as in training; eval-mode
        running statistics lag badly early in training), under a fixed seed and without gradients.
        Buffer side effects are discarded: every call restores the state first.
        """
        torch = self._torch
        source = source or self.batches
        restore(self.model, self.optimizer, state, self.names, self.device)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            x, y = source.batch(np.asarray(indices).reshape(-1))  # one large forward pass
            total = float(self.loss_fn(self.model(x), y, reduction="sum"))
        return total / max(int(np.asarray(indices).size), 1)
