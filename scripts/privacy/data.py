"""The digits universe and member / non-member splits for membership inference.

The universe is scikit-learn's 1,797 digits in the order the built-in tasks use
(``pol.tasks``: a fixed legacy permutation), so universe indices 0..1499 are the built-in
training set. A split draws ``members`` samples (the committed training set) and a disjoint
set of ``nonmembers`` (never trained on) with its own seed.

:func:`digits_members` is a data builder for the Recorder and the verifier
(``data_spec="scripts.privacy.data:digits_members"``, kwargs in the plan).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from pol.tasks import TaskData

DATA_SPEC = "scripts.privacy.data:digits_members"


@lru_cache(maxsize=1)
def digits_universe() -> tuple[np.ndarray, np.ndarray]:
    """(features float32 (1797, 64) in [0, 1], labels int64), in the built-in tasks' order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.RandomState(0).permutation(len(digits.target))  # the same order as pol.tasks
    x = (digits.data[order] / 16.0).astype(np.float32)
    y = digits.target[order].astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def split_indices(members: int, nonmembers: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Universe indices of the members and of a disjoint set of non-members."""
    n = len(digits_universe()[1])
    if members <= 0 or nonmembers < 0 or members + nonmembers > n:
        raise ValueError(f"members={members} and nonmembers={nonmembers} do not fit a universe of {n}")
    perm = np.random.default_rng(split_seed).permutation(n)
    return np.sort(perm[:members]), np.sort(perm[members:members + nonmembers])


def subset(indices: np.ndarray) -> Any:
    """A TensorDataset of the universe samples at ``indices`` (in that order)."""
    import torch
    from torch.utils.data import TensorDataset

    x, y = digits_universe()
    idx = np.asarray(indices, dtype=np.int64)
    return TensorDataset(torch.from_numpy(x[idx].copy()), torch.from_numpy(y[idx].copy()))


def digits_members(members: int = 256, nonmembers: int = 256, split_seed: int = 0) -> TaskData:
    """Data builder: train = the members, heldout = the non-members."""
    mem, non = split_indices(members, nonmembers, split_seed)
    return TaskData(subset(mem), subset(non) if len(non) else None)
