"""Replay of training steps from a recorded state: the committed step, run again.

Used by the verifier (segments, single steps, regeneration of unstored checkpoints) and by the
recorder's own self-check, so both run exactly the same code. Data is loaded once, and the model
and optimizer are built once per process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pol import optimizers
from pol.plan import Plan
from pol.schedule import lr_at
from pol.state import State, capture, restore
from pol.step import Step, run_step, seed_micro_batch
from pol.tasks import build_model


def to_device(batch: Any, device: str) -> Any:
    if hasattr(batch, "to"):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class BatchSource:
    """Gives the collated batch for a list of indices, as the recorder's loader built it
    (``default_collate`` of the samples), from tensors held once on the device when it can."""

    def __init__(self, dataset: Any, device: str):
        import torch

        self._dataset = dataset
        tensors = getattr(dataset, "tensors", None)
        self._tensors = tuple(t.to(device) for t in tensors) if tensors is not None else None
        self._device = device
        self._torch = torch

    def batch(self, indices: np.ndarray) -> Any:
        torch = self._torch
        if self._tensors is not None:
            idx = torch.from_numpy(np.array(indices, dtype=np.int64)).to(self._device)
            return [t[idx] for t in self._tensors]
        from torch.utils.data import default_collate

        return to_device(default_collate([self._dataset[int(i)] for i in indices]), self._device)


@dataclass
class Replayer:
    """Runs the committed training step over recorded indices, from a recorded state.

    ``model_spec`` and ``loss_spec`` name user code (a proof never does): the model spec is
    required when the plan's model is not built in; the loss spec when its loss is a user callable.
    """

    plan: Plan
    dataset: Any
    device: str
    model_spec: str
    loss_spec: str | None = None

    def __post_init__(self) -> None:
        import torch

        self.model = build_model(self.model_spec, self.plan.model.get("kwargs") or {}).to(self.device)
        self.model.train()
        self.optimizer = optimizers.build(self.plan.optimizer, self.model, lr_at(self.plan.lr_schedule, 0))
        self.names = optimizers.param_order(self.plan.optimizer)
        self.step = Step.from_spec(self.plan.step, self.loss_spec)
        self.batches = BatchSource(self.dataset, self.device)
        self._torch = torch

    def micro_batches(self, indices: np.ndarray, source: BatchSource | None = None) -> list[Any]:
        source = source or self.batches
        b = self.plan.batch_size
        return [source.batch(indices[m * b:(m + 1) * b]) for m in range(len(indices) // b)]

    def run(self, start_state: State, start_step: int, indices: np.ndarray,
            on_step: Callable[[int, State], None] | None = None) -> State:
        """Replay ``len(indices)`` steps from ``start_state``; return the captured end state.

        ``on_step(t, state)`` receives the state after every step but the last (for per-step digests).
        """
        restore(self.model, self.optimizer, start_state, self.names, self.device)
        lr = float(np.asarray(start_state.get("optim/lr", 0.0)))
        n = len(indices)
        acc = self.plan.accumulation
        per_epoch = max(1, int(self.plan.data["num_samples"]) // self.plan.samples_per_step) * acc
        for offset, step_indices in enumerate(indices):
            t = start_step + offset
            lr = lr_at(self.plan.lr_schedule, t)
            optimizers.set_lr(self.optimizer, self.plan.optimizer, lr)
            seed = self.plan.run_seed
            run_step(self.step, self.model, self.optimizer, self.micro_batches(step_indices),
                     lambda m, t=t: seed_micro_batch(seed, t, m),
                     lambda m, t=t: (t * acc + m) % per_epoch)  # the micro-batch's index in its epoch
            if on_step is not None and offset < n - 1:
                on_step(t + 1, capture(self.model, self.optimizer, t + 1, self.names, lr))
        return capture(self.model, self.optimizer, start_step + n, self.names, lr)

    def mean_loss(self, state: State, indices: np.ndarray, source: BatchSource | None = None) -> float:
        """Mean loss of a model state over micro-batches, without updating it (the progress check).

        Train-mode forward (BatchNorm uses the batch's own statistics, as in training), under a
        fixed seed and without gradients. Buffer side effects are discarded: every call
        restores the state first.
        """
        torch = self._torch
        restore(self.model, self.optimizer, state, self.names, self.device)
        flat = np.asarray(indices).reshape(-1)
        batches = self.micro_batches(flat, source)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            total = sum(float(self.step.loss(self.model, b, i)) for i, b in enumerate(batches))
        return total / max(len(batches), 1)


def replay_digests(replayer: Replayer, start_state: State, start_step: int, indices: np.ndarray) -> tuple[State, list[bytes]]:
    """Replay and return (end state, state digests after every step including the last)."""
    from pol.hashing import state_digest

    digests: list[bytes] = []
    end = replayer.run(start_state, start_step, indices, lambda t, s: digests.append(state_digest(s)))
    digests.append(state_digest(end))
    return end, digests


def first_difference(expected: Sequence[bytes], got: Sequence[bytes]) -> int | None:
    for i, (a, b) in enumerate(zip(expected, got)):
        if a != b:
            return i
    return None if len(expected) == len(got) else min(len(expected), len(got))
