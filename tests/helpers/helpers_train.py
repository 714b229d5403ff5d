"""Test helpers: record a proof of a built-in task (pol.runner.train_task, as `pol train` does)."""

from __future__ import annotations

from pathlib import Path

from pol.runner import train_task


def train_recorded(path: Path, key: Path, *, task: str = "digits-mlp", steps: int = 40, every: int = 10,
                   seed: int = 0, codec: str = "delta-zstd", anchor: int | None = None,
                   lr: float | None = None, data_kwargs: dict | None = None) -> Path:
    train_task(path, key, task=task, steps=steps, every=every, seed=seed, codec=codec, anchor_every=anchor,
               lr=lr, data_kwargs=data_kwargs)
    return path
