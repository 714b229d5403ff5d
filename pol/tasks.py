"""Built-in tasks, and resolution of model / data specs.

A spec is either a built-in task name or ``"package.module:callable"`` (called with JSON kwargs).
Only the *user* names code to import (the recorder's caller, or the verifier's ``--model`` /
``--data`` flags); a verifier never imports a name it read from a proof.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pol.errors import DataUnavailableError, short_reason


@dataclass(frozen=True)
class TaskData:
    """The committed training set and a held-out set (for the progress check)."""

    train: Any      # torch Dataset; TensorDataset for built-in tasks
    heldout: Any | None = None


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    build_model: Callable[..., Any]
    build_data: Callable[..., TaskData]
    optimizer: str = "SGD"
    hparams: dict[str, Any] = field(default_factory=dict)
    lr: float = 0.1
    batch_size: int = 32
    loss: str = "cross_entropy"


def _digits(shape: tuple[int, ...]) -> TaskData:
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from torch.utils.data import TensorDataset

    digits = load_digits()
    order = np.random.RandomState(0).permutation(len(digits.target))  # legacy RNG: stable forever
    x = torch.tensor(digits.data[order] / 16.0, dtype=torch.float32).reshape(-1, *shape)
    y = torch.tensor(digits.target[order], dtype=torch.int64)
    cut = 1500
    return TaskData(TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:]))


def _digits_mlp_model(hidden: int = 64) -> Any:
    from pol.models import MLP

    return MLP(64, hidden, 10)


def _digits_cnn_model(dropout: float = 0.1) -> Any:
    from pol.models import SmallCNN

    return SmallCNN(10, dropout)


def synthetic_cifar(num_samples: int = 2560, heldout: int = 512, data_seed: int = 1234) -> TaskData:
    """CIFAR-shaped generated data: class templates plus noise, learnable but not trivial."""
    import torch
    from torch.utils.data import TensorDataset

    from pol.resources import check_generated_bytes

    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (num_samples, heldout)):
        raise DataUnavailableError("synthetic data: num_samples and heldout must be non-negative integers")
    check_generated_bytes((num_samples + heldout) * (3 * 32 * 32 * 4 + 8), "synthetic data of this size")
    g = torch.Generator().manual_seed(data_seed)
    templates = torch.nn.functional.interpolate(torch.randn(10, 3, 8, 8, generator=g), size=32, mode="bilinear")
    total = num_samples + heldout
    y = torch.randint(0, 10, (total,), generator=g)
    x = templates[y] * 0.5 + torch.randn(total, 3, 32, 32, generator=g)
    return TaskData(TensorDataset(x[:num_samples], y[:num_samples]), TensorDataset(x[num_samples:], y[num_samples:]))


def _resnet20_model(width: int = 16) -> Any:
    from pol.models import ResNet20

    return ResNet20(10, width)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("digits-mlp", "MLP on scikit-learn's 8x8 digits (1,500 train / 297 held out)",
             _digits_mlp_model, lambda: _digits((64,)), "SGD", {"momentum": 0.9}, 0.05, 32),
        Task("digits-cnn", "small CNN with BatchNorm and dropout on the digits",
             _digits_cnn_model, lambda: _digits((1, 8, 8)), "SGD", {"momentum": 0.9}, 0.05, 32),
        Task("synthetic-resnet20", "ResNet-20 on generated CIFAR-shaped data (benchmarks)",
             _resnet20_model, synthetic_cifar, "SGD", {"momentum": 0.9, "weight_decay": 5e-4}, 0.1, 128),
    )
}


def import_callable(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise DataUnavailableError(f"{spec!r} is neither a built-in task ({', '.join(TASKS)}) nor 'module:callable'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise DataUnavailableError(f"cannot import {spec!r}: {exc}") from None
    if not callable(obj):
        raise DataUnavailableError(f"{spec!r} is not callable")
    return obj


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise DataUnavailableError(f"unknown task {name!r}; built-in tasks: {', '.join(TASKS)}") from None


def _call_with_kwargs(builder: Callable[..., Any], kwargs: Any, spec: str, what: str) -> Any:
    """``builder(**kwargs)`` with kwargs read from a plan: a non-object, or arguments the builder
    does not take, mean this input cannot be judged (not an internal error)."""
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise DataUnavailableError(f"the {what} kwargs for {spec!r} must be an object, found {kwargs!r:.60}")
    try:
        return builder(**kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:  # torch rejects e.g. a negative width with RuntimeError
        raise DataUnavailableError(f"cannot build the {what} {spec!r} with kwargs {sorted(kwargs)}: "
                                   f"{short_reason(exc)}") from None


def build_model(spec: str, kwargs: dict[str, Any] | None = None) -> Any:
    builder = TASKS[spec].build_model if spec in TASKS else import_callable(spec)
    return _call_with_kwargs(builder, kwargs, spec, "model")


def seeded_model(spec: str, kwargs: dict[str, Any] | None, seed: int) -> Any:
    """The initial model: built on CPU right after seeding torch with derive_seed(seed, 'init').

    ``seed`` is a plan's ``run_seed`` (bound to the signer and the plan nonce)."""
    import torch

    from pol.hashing import derive_seed

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        return build_model(spec, kwargs)


def seeded_weights(spec: str, kwargs: dict[str, Any] | None, seed: int) -> dict[str, Any]:
    """The initial model's ``state_dict`` as numpy arrays (what checkpoint 0 must hold)."""
    model = seeded_model(spec, kwargs, seed)
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def resolve_spec(plan_spec: str | None, user_spec: str | None, what: str) -> str:
    """Built-in names resolve to this package; any other code must be named by the user."""
    if user_spec:
        return user_spec
    if plan_spec in TASKS:
        return plan_spec
    raise DataUnavailableError(
        f"the proof's {what} is {plan_spec!r}, which is not built in; name the code yourself with "
        f"--{what} module:callable (a verifier never imports code named inside a proof)")


def load_data(spec: str, kwargs: dict[str, Any] | None = None) -> TaskData:
    builder = TASKS[spec].build_data if spec in TASKS else import_callable(spec)
    result = _call_with_kwargs(builder, kwargs, spec, "data")
    return result if isinstance(result, TaskData) else TaskData(result)
