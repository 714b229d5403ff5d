"""Model builders a verifier is pointed at with --model (test-only, user-named code)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pol.models import MLP


def mlp_from_published(path: str | None = None, hidden: int = 64) -> nn.Module:
    """The digits MLP; with ``path``, initialised from a published safetensors file (a fine-tune)."""
    model = MLP(64, hidden, 10)
    if path is not None:
        from pol.weights_io import load_weights

        wf = load_weights(path)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in wf.tensors.items()}, strict=True)
    return model


class TiedMLP(nn.Module):
    """Two layers sharing one weight matrix: state_dict() carries both names."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, 64)
        self.fc2.weight = self.fc1.weight
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


def tied_mlp() -> nn.Module:
    return TiedMLP()
