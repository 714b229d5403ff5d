"""Training runs for the membership experiments: recorded targets and the attacker's shadows.

A **target** is trained by the project's own :class:`pol.Recorder` on the members of a split
(:mod:`scripts.privacy.data`) and recorded twice from the same seed: once as a full proof and
once as a compact proof (``compact_anchor_every``: with a K larger than the number of
checkpoints only checkpoint 0, which the seed rebuilds, and the final weights are stored).
Training is deterministic on one stack, so both files describe the same run.

A **shadow** is the attacker's own model: same public hyper-parameters, its own seed and its
own random member set drawn from the universe, trained by a plain loop with the same standard
step, its weights kept at the same checkpoint steps as the target's plan. The attacker needs
no proof of it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scripts.privacy.data import DATA_SPEC, digits_universe, split_indices

MODEL_SPEC = "digits-mlp"
Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters shared by targets and shadows (all public: they are in the plan)."""

    members: int = 128
    nonmembers: int = 512
    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    every: int = 10
    hidden: int = 64

    @property
    def num_steps(self) -> int:
        return self.epochs * (self.members // self.batch_size)

    @property
    def num_checkpoints(self) -> int:
        return 1 + math.ceil(self.num_steps / self.every)

    def checkpoint_step(self, i: int) -> int:
        return min(i * self.every, self.num_steps)

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return {"hidden": self.hidden}

    def data_kwargs(self, split_seed: int) -> dict[str, Any]:
        return {"members": self.members, "nonmembers": self.nonmembers, "split_seed": split_seed}


def record_target(cfg: TrainConfig, path: str | os.PathLike[str], key: str | os.PathLike[str], *, seed: int,
                  split_seed: int, compact_k: int | None = None) -> Path:
    """Train on the split's members with the Recorder; a full proof, or compact with ``compact_k``."""
    import torch
    from torch.nn import functional as F

    from pol import Recorder
    from pol.tasks import load_data
    from pol.training import standard_step

    data = load_data(DATA_SPEC, cfg.data_kwargs(split_seed))
    loader = torch.utils.data.DataLoader(data.train, batch_size=cfg.batch_size)
    with Recorder(path, key=key, every=cfg.every, seed=seed, model_spec=MODEL_SPEC, model_kwargs=cfg.model_kwargs,
                  data_spec=DATA_SPEC, data_kwargs=cfg.data_kwargs(split_seed), epochs=cfg.epochs,
                  lr_schedule={"kind": "constant", "lr": cfg.lr}, compact_anchor_every=compact_k,
                  overwrite=True, nonce=f"{seed:032x}"[-32:]) as rec:  # the full and compact proofs: one trajectory
        model, optimizer, rloader = rec.attach(
            model=None, optimizer=lambda p: torch.optim.SGD(p, lr=cfg.lr, momentum=cfg.momentum), data_loader=loader)
        assert rec.plan is not None and rec.plan.num_steps == cfg.num_steps
        while rec.step < rec.plan.num_steps:
            for x, y in rloader:
                standard_step(model, optimizer, F.cross_entropy, x, y)
    return Path(path)


def train_shadow(cfg: TrainConfig, member_idx: np.ndarray, seed: int) -> list[Weights]:
    """The attacker's model on universe samples ``member_idx``: weights at every checkpoint step."""
    import torch
    from torch.nn import functional as F

    from pol.hashing import derive_seed
    from pol.sampler import BatchSchedule
    from pol.tasks import seeded_model
    from pol.training import standard_step

    x_all, y_all = digits_universe()
    idx = np.asarray(member_idx, dtype=np.int64)
    x, y = torch.from_numpy(x_all[idx].copy()), torch.from_numpy(y_all[idx].copy())
    model = seeded_model(MODEL_SPEC, cfg.model_kwargs, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    schedule = BatchSchedule(seed, len(idx), cfg.batch_size)

    def snapshot() -> Weights:
        return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}

    out = [snapshot()]
    for t in range(cfg.num_steps):
        torch.manual_seed(derive_seed(seed, "step", t))
        b = torch.from_numpy(schedule.indices(t))
        standard_step(model, optimizer, F.cross_entropy, x[b], y[b])
        if (t + 1) % cfg.every == 0 or t + 1 == cfg.num_steps:
            out.append(snapshot())
    assert len(out) == cfg.num_checkpoints
    return out


@dataclass(frozen=True)
class Shadow:
    members: np.ndarray          # bool over the universe
    checkpoints: list[Weights]   # one per checkpoint step of the plan


def train_shadows(cfg: TrainConfig, count: int, seed: int) -> list[Shadow]:
    """``count`` shadows, each on ``cfg.members`` samples drawn at random from the universe."""
    n = len(digits_universe()[1])
    rng = np.random.default_rng(seed)
    shadows = []
    for s in range(count):
        idx = np.sort(rng.choice(n, cfg.members, replace=False))
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True
        shadows.append(Shadow(mask, train_shadow(cfg, idx, seed=int(rng.integers(1 << 31)) + s)))
    return shadows


def target_candidates(cfg: TrainConfig, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(universe indices of the candidates, 1 for members / 0 for non-members)."""
    mem, non = split_indices(cfg.members, cfg.nonmembers, split_seed)
    idx = np.concatenate([mem, non])
    return idx, np.concatenate([np.ones(len(mem), np.int8), np.zeros(len(non), np.int8)])
