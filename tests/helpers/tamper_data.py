"""Data builders a verifier can be pointed at with --data (test-only)."""

from __future__ import annotations

from torch.utils.data import TensorDataset

import pol
from pol.tasks import TaskData


def digits_one_label_changed() -> TaskData:
    data = pol.load_data("digits-mlp")
    x, y = data.train.tensors
    y = y.clone()
    y[7] = (y[7] + 1) % 10
    return TaskData(TensorDataset(x, y), data.heldout)


def digits_honest() -> TaskData:
    return pol.load_data("digits-mlp")
