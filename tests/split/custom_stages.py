"""User-named stage modules for the custom-split test (``--stage-module tests.split.custom_stages:...``)."""

from __future__ import annotations

from torch import nn


def bottom(width: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(64, width), nn.Tanh())


def head(width: int = 16) -> nn.Module:
    return nn.Linear(width, 10)
