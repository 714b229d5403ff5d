"""Train a built-in task with recording: the loop behind ``pol train``, tests and benchmarks."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pol.plan import Plan
from pol.recorder import Recorder
from pol.tasks import get_task, load_data
from pol.training import loss_function, optimizer_class, standard_step


def train_task(
    path: str | os.PathLike[str],
    key: str | os.PathLike[str],
    *,
    task: str,
    every: int = 10,
    seed: int = 0,
    steps: int | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    lr_schedule: dict[str, Any] | None = None,
    data_kwargs: dict[str, Any] | None = None,
    codec: str = "delta-zstd",
    anchor_every: int | None = None,
    overwrite: bool = True,
    device: str | None = None,
    step_digests: bool = True,
    self_check: bool = True,
    on_step: Callable[[float], None] | None = None,
) -> Plan:
    """Record a run of a built-in task with the standard step; returns the signed plan.

    ``device`` ("cpu", "cuda", ...; default: CPU) is where the model and batches live.
    ``on_step(loss)`` is called after every step (the CLI draws its progress bar with it; it
    forces a device sync, so leave it ``None`` when timing).
    """
    import torch

    spec = get_task(task)
    if steps is None and epochs is None:
        epochs = 1
    data = load_data(task, data_kwargs or {})
    base_lr = spec.lr if lr is None else lr
    loader = torch.utils.data.DataLoader(data.train, batch_size=batch_size or spec.batch_size)
    opt_cls = optimizer_class(spec.optimizer)
    loss_fn = loss_function(spec.loss)
    with Recorder(path, key=key, every=every, seed=seed, task=task, data_kwargs=data_kwargs, epochs=epochs,
                  steps=steps, lr_schedule=lr_schedule or {"kind": "constant", "lr": base_lr}, loss=spec.loss,
                  codec=codec, compact_anchor_every=anchor_every, overwrite=overwrite, device=device,
                  step_digests=step_digests, self_check=self_check) as rec:
        model, optimizer, rloader = rec.attach(
            model=None, optimizer=lambda p: opt_cls(p, lr=base_lr, **spec.hparams), data_loader=loader)
        assert rec.plan is not None
        while rec.step < rec.plan.num_steps:
            for x, y in rloader:  # the default step spec: inputs [0], target 1
                if device is not None:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                loss = standard_step(model, optimizer, loss_fn, x, y)
                if on_step is not None:
                    on_step(float(loss))
        return rec.plan
