"""Test helpers: record a proof with the public Recorder API, exactly as a user would."""

from __future__ import annotations

from pathlib import Path

import torch

import pol
from pol.tasks import get_task
from pol.training import loss_function, optimizer_class


def train_recorded(path: Path, key: Path, *, task: str = "digits-mlp", steps: int = 40, every: int = 10,
                   seed: int = 0, codec: str = "delta-zstd", anchor: int | None = None,
                   lr: float | None = None, data_kwargs: dict | None = None) -> Path:
    spec = get_task(task)
    data = pol.load_data(task, data_kwargs or {})
    loader = torch.utils.data.DataLoader(data.train, batch_size=spec.batch_size)
    loss_fn = loss_function(spec.loss)
    lr = spec.lr if lr is None else lr
    with pol.Recorder(path, key=key, every=every, seed=seed, task=task, steps=steps, codec=codec,
                      data_kwargs=data_kwargs, compact_anchor_every=anchor, overwrite=True) as rec:
        model, opt, loader = rec.attach(model=None, optimizer=lambda p: optimizer_class(spec.optimizer)(
            p, lr=lr, **spec.hparams), data_loader=loader)
        while rec.step < steps:
            for x, y in loader:
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
    return path
