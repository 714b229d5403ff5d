"""Record a plain training loop that Hugging Face Accelerate prepares.

::

    from accelerate import Accelerator
    import pol
    from pol.integrations.accelerate import prepare

    accelerator = Accelerator(mixed_precision="bf16", gradient_accumulation_steps=2)
    with pol.Recorder("run.pol.h5", key="keys/trainer.key", every=10, seed=0, steps=200, clip=1.0,
                      model_spec="my_pkg:build_model", data_spec="my_pkg:train_data") as rec:
        model, optimizer, loader = prepare(rec, accelerator, model=rec.initial_model(),
                                           optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
                                           data_loader=DataLoader(data, batch_size=16))
        for x, y in loader:
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss = F.cross_entropy(model(x), y)
                accelerator.backward(loss)                     # divides by the accumulation steps
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)   # as committed (clip=1.0)
                optimizer.step()
                optimizer.zero_grad()

:func:`prepare` commits the accelerator's mixed precision (``bf16``: autocast, which the loop
opens with ``accelerator.autocast()`` around forward and loss) and its gradient accumulation,
prepares the model and optimizer (not the loader: the recorder owns the batch order), and makes
``accelerator.clip_grad_norm_`` / ``clip_grad_value_`` report the gradient norm without clipping:
the recorder clips as committed right before ``optimizer.step()`` (clipping twice would not be
bitwise the same as once); a call whose bound differs from the committed one is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from pol.errors import PlanError
from pol.recorder import Recorder

__all__ = ["prepare", "accelerator_options", "take_over_clipping", "restore_forward"]

_PRECISIONS = {"no": None, "bf16": "bfloat16"}


def accelerator_options(accelerator: Any) -> dict[str, Any]:
    """Recorder options an accelerator's settings commit; a :class:`PlanError` for what is not recorded."""
    if accelerator.num_processes != 1:
        raise PlanError(f"the accelerator runs {accelerator.num_processes} processes; only single-process training is "
                        "recorded yet (docs/INTEGRATIONS.md, Multi-rank)")
    precision = str(getattr(accelerator.mixed_precision, "value", accelerator.mixed_precision))
    if precision not in _PRECISIONS:
        if precision == "fp16":
            raise PlanError("mixed_precision='fp16' needs a GradScaler, whose skipped steps and scale are not "
                            "recorded: use mixed_precision='bf16' or 'no'")
        raise PlanError(f"mixed_precision={precision!r} is not recorded: use 'bf16' or 'no'")
    dynamo = getattr(getattr(accelerator.state, "dynamo_plugin", None), "backend", None)
    if dynamo is not None and str(getattr(dynamo, "value", dynamo)).lower() not in ("no", "none"):
        raise PlanError("torch.compile (dynamo) is not recorded: replay runs the model eagerly")
    autocast = _PRECISIONS[precision]
    return {"autocast": ({"device_type": accelerator.device.type, "dtype": autocast} if autocast else None),
            "accumulation": int(accelerator.gradient_accumulation_steps)}


def _norm_type(value: Any) -> float:
    return float("inf") if value in ("inf", float("inf")) else float(value)


def _total_norm(grads: list[Any], norm_type: float) -> Any:
    """The norm ``clip_grad_norm_`` reports, computed without touching the gradients."""
    import torch

    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads, norm_type)
    if not grads:
        return torch.tensor(0.0)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, norm_type) for g in grads]), norm_type)


def take_over_clipping(accelerator: Any, model: Any, committed: Mapping[str, Any] | None) -> None:
    """Make ``accelerator.clip_grad_norm_``/``clip_grad_value_`` check the bound against the committed clip
    and report the total gradient norm without clipping (the recorder clips before the update)."""
    import torch

    params = list(model.parameters())

    def _check_parameters(parameters: Any) -> list[Any]:
        given = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
        if {id(p) for p in given} != {id(p) for p in params}:
            raise PlanError("the loop clips a subset of the parameters; the recorder clips all of model.parameters()")
        return given

    def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0) -> Any:
        _check_parameters(parameters)
        norm = _total_norm([p.grad for p in params if p.grad is not None], _norm_type(norm_type))
        if math.isinf(float(max_norm)):
            return norm  # reading the norm (the Hugging Face Trainer logs it): nothing to clip
        want = committed is not None and committed.get("kind") == "norm" and float(committed["max_norm"]) == float(
            max_norm) and _norm_type(committed["norm_type"]) == _norm_type(norm_type)
        if not want:
            raise PlanError(f"the loop clips gradients to norm {max_norm} but the plan commits clip={committed}: pass "
                            f"clip={max_norm} to the Recorder (it clips right before optimizer.step())")
        return norm

    def clip_grad_value_(parameters: Any, clip_value: float) -> None:
        _check_parameters(parameters)
        if not (committed is not None and committed.get("kind") == "value"
                and float(committed["clip_value"]) == float(clip_value)):
            raise PlanError(f"the loop clips gradients to value {clip_value} but the plan commits clip={committed}: pass "
                            f'clip={{"kind": "value", "clip_value": {clip_value}}} to the Recorder')

    accelerator.clip_grad_norm_ = clip_grad_norm_
    accelerator.clip_grad_value_ = clip_grad_value_


def restore_forward(model: Any) -> None:
    """Undo Accelerate's mixed-precision wrapping of ``model.forward`` (autocast inside the forward pass,
    outputs cast to float32): the committed step runs autocast where the loop opens it, around forward
    and loss, and the recorder checks that region at every forward of the first segment."""
    original = model.__dict__.pop("_original_forward", None)
    if original is None:
        return
    if getattr(original, "__func__", None) is getattr(type(model), "forward", None):
        model.__dict__.pop("forward", None)  # the class's own forward again
    else:
        model.forward = original


class _DeviceBatches:
    """The recorded loader, with every batch moved to the accelerator's device."""

    def __init__(self, loader: Any, device: Any):
        self._loader, self._device = loader, device
        self.dataset, self.batch_size = loader.dataset, loader.batch_size

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Any]:
        from pol.replay import to_device

        for batch in self._loader:
            yield to_device(batch, self._device)


def prepare(recorder: Recorder, accelerator: Any, *, model: Any, optimizer: Any, data_loader: Any) -> tuple[Any, Any, Any]:
    """Commit the accelerator's settings, attach the recorder, prepare model and optimizer.

    ``model`` must be the run's initial model (``recorder.initial_model()``); ``optimizer`` a callable
    ``params -> Optimizer`` (built after the model moves to the accelerator's device) or an optimizer
    over its parameters. Returns (model, optimizer, loader) for the loop; the loader is the recorder's.
    """
    import torch

    recorder.configure(**accelerator_options(accelerator))
    model = model.to(accelerator.device)
    if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = optimizer(model.parameters())
    model, optimizer, loader = recorder.attach(model=model, optimizer=optimizer, data_loader=data_loader)
    prepared_model, prepared_optimizer = accelerator.prepare(model, optimizer)
    if prepared_model is not model:
        raise PlanError("the accelerator wrapped the model (distributed or compiled); only a single process is recorded")
    restore_forward(model)
    assert recorder.plan is not None
    take_over_clipping(accelerator, model, recorder.plan.step["clip"])
    batches = loader if accelerator.device.type == "cpu" else _DeviceBatches(loader, accelerator.device)
    return model, prepared_optimizer, batches
