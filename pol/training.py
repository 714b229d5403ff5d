"""The standard training step, shared by the recorder's built-in loop and the verifier's replay.

A user loop recorded with :class:`pol.Recorder` must perform the same step (zero the gradients,
``loss_fn(model(x), y)``, ``backward()``, ``optimizer.step()``) for replay to reproduce it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pol.errors import PlanError

OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")


def loss_function(name: str) -> Callable[..., Any]:
    from torch.nn import functional as F

    table = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss, "nll": F.nll_loss}
    if name not in table:
        raise PlanError(f"unknown loss {name!r}; expected one of {sorted(table)}")
    return table[name]


def optimizer_class(name: str) -> Any:
    """Only allow-listed torch.optim classes: a proof never names code to run."""
    import torch

    if name not in OPTIMIZERS:
        raise PlanError(f"optimizer {name!r} is not supported; expected one of {', '.join(OPTIMIZERS)}")
    return getattr(torch.optim, name)


def standard_step(model: Any, optimizer: Any, loss_fn: Callable[..., Any], x: Any, y: Any) -> Any:
    """One step; returns the detached loss tensor (no device sync)."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()
