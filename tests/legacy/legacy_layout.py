"""A generator of reference-layout (Jia et al.) proof directories, for the import tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def make_legacy_dir(directory: Path, *, steps: int = 30, save_freq: int = 10, seed: int = 0, lr: float = 0.05,
                    milestones: list[int] | None = None, data_parallel: bool = False) -> Path:
    """Train digits-mlp the way the reference train.py does and save its files.

    Like the reference: a random (unseeded by any plan) index sequence; ``model_step_i`` saved
    *before* step ``i`` every ``save_freq`` steps and once after the last; ``torch.save`` of
    ``{'net', 'optimizer'[, 'scheduler']}``; ``indices.npy``; ``hash.txt`` over ``str()`` of the data.
    """
    import torch

    import pol
    from pol.models import MLP

    directory.mkdir(parents=True, exist_ok=True)
    data = pol.load_data("digits-mlp").train
    x_all, y_all = data.tensors
    batch = 32
    rng = np.random.default_rng(seed)
    seq = np.concatenate([rng.permutation(len(y_all)) for _ in range(-(-steps * batch // len(y_all)))])
    sequence = seq[:steps * batch].reshape(steps, batch)
    np.save(directory / "indices.npy", sequence)
    (directory / "hash.txt").write_text(hashlib.sha256(str(x_all.numpy()).encode()).hexdigest())
    torch.manual_seed(seed)
    net = MLP(64, 64, 10)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1) if milestones else None

    def save(i: int) -> None:
        sd = net.state_dict()
        if data_parallel:
            sd = {"module." + k: v for k, v in sd.items()}
        state = {"net": sd, "optimizer": opt.state_dict()}
        if sched is not None:
            state["scheduler"] = sched.state_dict()
        torch.save(state, directory / f"model_step_{i}")

    for i in range(steps):
        if i % save_freq == 0:
            save(i)
        idx = torch.from_numpy(sequence[i])
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x_all[idx]), y_all[idx]).backward()
        opt.step()
        if sched is not None:
            sched.step()
    save(steps)
    return directory
