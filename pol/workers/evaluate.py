"""Accuracy of a set of weights on a held-out set (for reports and benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pol.tasks import build_model


def predictions(model_spec: str, kwargs: Mapping[str, Any], weights: Mapping[str, np.ndarray], x: Any) -> np.ndarray:
    import torch

    model = build_model(model_spec, dict(kwargs))
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=True)
    model.eval()
    with torch.no_grad():
        return model(x).argmax(1).numpy()


def accuracy(model_spec: str, kwargs: Mapping[str, Any], weights: Mapping[str, np.ndarray], x: Any, y: Any) -> float:
    pred = predictions(model_spec, kwargs, weights, x)
    return float((pred == np.asarray(y)).mean())
