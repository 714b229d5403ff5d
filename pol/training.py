"""The plain training step and loss names, for code that trains outside a recorded plan.

Recorded runs and their replay use the committed step of :mod:`pol.step` (loss with kwargs,
batch layout, output selection, clipping, autocast, accumulation) and the optimizer specs of
:mod:`pol.optimizers`; this module keeps the simplest form of both for built-in loops
(``zero_grad -> loss_fn(model(x), y) -> backward -> step``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pol.errors import PlanError
from pol.optimizers import OPTIMIZERS, optimizer_class

__all__ = ["OPTIMIZERS", "optimizer_class", "loss_function", "standard_step"]


def loss_function(name: str) -> Callable[..., Any]:
    from pol.step import BUILTIN_LOSSES, _builtin_loss

    if name not in BUILTIN_LOSSES or name == "model_output":
        raise PlanError(f"unknown loss {name!r}; expected one of {sorted(set(BUILTIN_LOSSES) - {'model_output'})}")
    return _builtin_loss(name)


def standard_step(model: Any, optimizer: Any, loss_fn: Callable[..., Any], x: Any, y: Any) -> Any:
    """One step; returns the detached loss tensor (no device sync)."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()
