"""Optimizers as committed specs: allow-listed torch.optim classes, hyperparameters, parameter groups.

The plan's ``optimizer`` field::

    {"type": "AdamW",
     "hparams": {...},                       # constructor defaults, as the constructor takes them (no lr)
     "groups": [{"params": ["fc1.weight", ...], "lr_scale": 1.0, "hparams": {"weight_decay": 0.01}}, ...]}

Every parameter of the model is in exactly one group, named as in ``model.named_parameters()``;
group ``hparams`` hold what differs from the defaults. Group g trains with learning rate
``lr_scale_g * lr_at(t)`` (the committed schedule). The verifier rebuilds the optimizer with
:func:`build`; a proof never names a class outside :data:`OPTIMIZERS`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from pol.errors import PlanError, ProofFormatError, short_reason

# torch.optim classes whose step needs no closure and whose state is tensors (+ scalars).
OPTIMIZERS = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam")
_NOT_COMMITTED = {"params", "lr", "initial_lr"}
MAX_GROUPS = 1024


def optimizer_class(name: str) -> Any:
    """Only allow-listed torch.optim classes: a proof never names code to run."""
    import torch

    if name not in OPTIMIZERS:
        raise PlanError(f"optimizer {name!r} is not supported; expected one of {', '.join(OPTIMIZERS)}")
    return getattr(torch.optim, name)


def _jsonable(key: str, value: Any) -> Any:
    if isinstance(value, tuple):
        value = list(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PlanError(f"optimizer setting {key}={value!r} is not finite")
        return value
    if isinstance(value, list) and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in value):
        return value
    raise PlanError(f"optimizer setting {key}={value!r} cannot be committed to the plan")


def constructor_keys(cls: Any) -> set[str]:
    return {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "params")}


def describe(optimizer: Any, names_by_id: Mapping[int, str]) -> dict[str, Any]:
    """The plan's spec of a live optimizer; ``names_by_id`` maps id(parameter) to its name."""
    import torch

    cls = type(optimizer)
    if cls.__name__ not in OPTIMIZERS or cls is not getattr(torch.optim, cls.__name__, None):
        raise PlanError(f"optimizer {cls.__name__} is not supported; use one of {', '.join(OPTIMIZERS)}")
    accepted = constructor_keys(cls)
    defaults = {k: _jsonable(k, v) for k, v in optimizer.defaults.items() if k in accepted and k not in _NOT_COMMITTED}
    base_lr = optimizer.param_groups[0]["lr"]
    groups = []
    for g in optimizer.param_groups:
        params = []
        for p in g["params"]:
            if id(p) not in names_by_id:
                raise PlanError("the optimizer holds a tensor that is not a parameter of the model")
            params.append(names_by_id[id(p)])
        overrides = {k: _jsonable(k, v) for k, v in g.items()
                     if k not in _NOT_COMMITTED and k in accepted and _jsonable(k, v) != defaults.get(k)}
        lr = float(g["lr"])
        scale = 1.0 if lr == base_lr else (lr / base_lr if base_lr else math.nan)
        if not math.isfinite(scale):
            raise PlanError("parameter group learning rates must be multiples of the first group's (which is not 0)")
        groups.append({"params": params, "lr_scale": scale, "hparams": overrides})
    names = [n for g in groups for n in g["params"]]
    if len(set(names)) != len(names):
        raise PlanError("a parameter appears in two optimizer groups")
    if sorted(names) != sorted(set(names_by_id.values())):
        raise PlanError("the optimizer must hold all of the model's parameters")
    return {"type": cls.__name__, "hparams": defaults, "groups": groups}


def validate(spec: Any, parameter_names: list[str] | None = None) -> dict[str, Any]:
    """Structure of an optimizer spec read from a plan (a proof is untrusted)."""
    if not isinstance(spec, Mapping) or set(spec) != {"type", "hparams", "groups"}:
        raise ProofFormatError('plan optimizer must be {"type", "hparams", "groups"}')
    if spec["type"] not in OPTIMIZERS:
        raise ProofFormatError(f"plan optimizer {spec['type']!r:.40} is not one of {', '.join(OPTIMIZERS)}")
    if not isinstance(spec["hparams"], Mapping):
        raise ProofFormatError("plan optimizer.hparams must be an object")
    accepted = constructor_keys(optimizer_class(spec["type"]))
    groups = spec["groups"]
    if not isinstance(groups, list) or not 1 <= len(groups) <= MAX_GROUPS:
        raise ProofFormatError(f"plan optimizer.groups must be a list of 1..{MAX_GROUPS} groups")
    seen: list[str] = []
    for g in groups:
        if not isinstance(g, Mapping) or set(g) != {"params", "lr_scale", "hparams"}:
            raise ProofFormatError('each optimizer group must be {"params", "lr_scale", "hparams"}')
        if not isinstance(g["params"], list) or not all(isinstance(n, str) for n in g["params"]):
            raise ProofFormatError("optimizer group params must be a list of parameter names")
        scale = g["lr_scale"]
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale) or scale < 0:
            raise ProofFormatError("optimizer group lr_scale must be a non-negative number")
        if not isinstance(g["hparams"], Mapping):
            raise ProofFormatError("optimizer group hparams must be an object")
        unknown = sorted(set(g["hparams"]) - accepted)
        if unknown:  # torch would store them in the group and ignore them: nothing is signed that replay ignores
            raise ProofFormatError(f"optimizer group hparams {unknown[:3]} are not settings of {spec['type']}")
        seen.extend(g["params"])
    if len(set(seen)) != len(seen):
        raise ProofFormatError("a parameter appears in two optimizer groups")
    if parameter_names is not None and sorted(seen) != sorted(parameter_names):
        raise ProofFormatError("the optimizer groups do not hold exactly the model's parameters")
    return dict(spec)


def param_order(spec: Mapping[str, Any]) -> list[str]:
    """Parameter names in the optimizer's order (groups in order): the indices of its state_dict."""
    return [n for g in spec["groups"] for n in g["params"]]


def build(spec: Mapping[str, Any], model: Any, base_lr: float) -> Any:
    """The optimizer of a plan, over ``model``'s parameters; hyperparameters torch rejects are
    input errors (they come from an untrusted plan)."""
    cls = optimizer_class(spec["type"])
    params = dict(model.named_parameters())
    validate(spec, list(params))
    groups = [{"params": [params[n] for n in g["params"]], "lr": base_lr * float(g["lr_scale"]), **g["hparams"]}
              for g in spec["groups"]]
    try:
        return cls(groups, lr=base_lr, **spec["hparams"])
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise ProofFormatError(f"the plan's optimizer settings are not accepted by {cls.__name__}: "
                               f"{short_reason(exc)}") from None


def set_lr(optimizer: Any, spec: Mapping[str, Any], base_lr: float) -> None:
    for group, g in zip(optimizer.param_groups, spec["groups"]):
        group["lr"] = base_lr * float(g["lr_scale"])
