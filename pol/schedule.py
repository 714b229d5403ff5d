"""Learning-rate schedules as committed, JSON-serialisable specs.

The plan holds the spec; :func:`lr_at` gives the learning rate of every step, so the whole
schedule is fixed before training. Kinds::

    {"kind": "constant", "lr": 0.1}
    {"kind": "step", "lr": 0.1, "milestones": [1000, 1500], "gamma": 0.1}
    {"kind": "cosine", "lr": 0.1, "min_lr": 0.0, "total_steps": 2000, "warmup_steps": 0}
    {"kind": "table", "values": [0.1, 0.1, 0.05, ...]}   # one value per step
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from pol.errors import PlanError

ScheduleSpec = dict[str, Any]


def _rate(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# kind -> field -> (what the value must be, check, required)
_FIELDS: dict[str, dict[str, tuple[str, Callable[[Any], bool], bool]]] = {
    "constant": {"lr": ("a non-negative number", _rate, True)},
    "step": {"lr": ("a non-negative number", _rate, True),
             "milestones": ("a list of step numbers", lambda v: isinstance(v, list) and all(map(_count, v)), True),
             "gamma": ("a non-negative number", _rate, True)},
    "cosine": {"lr": ("a non-negative number", _rate, True),
               "total_steps": ("a step count", _count, True),
               "min_lr": ("a non-negative number", _rate, False),
               "warmup_steps": ("a step count", _count, False)},
    "table": {"values": ("a list of non-negative numbers", lambda v: isinstance(v, list) and all(map(_rate, v)), True)},
}


def validate(spec: ScheduleSpec) -> ScheduleSpec:
    """Check that ``spec`` is a schedule :func:`lr_at` can evaluate; returns a copy."""
    if not isinstance(spec, Mapping):
        raise PlanError(f"a learning-rate schedule must be an object, found {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in _FIELDS:
        raise PlanError(f"unknown learning-rate schedule kind {kind!r}; expected one of {sorted(_FIELDS)}")
    missing = {name for name, (_, _, required) in _FIELDS[kind].items() if required} - set(spec)
    if missing:
        raise PlanError(f"schedule {kind!r} is missing {sorted(missing)}")
    for name, (what, ok, _) in _FIELDS[kind].items():
        if name in spec and not ok(spec[name]):
            raise PlanError(f"schedule {kind!r}: {name} must be {what}, found {spec[name]!r:.40}")
    return dict(spec)


def lr_at(spec: ScheduleSpec, step: int) -> float:
    """Learning rate used by optimizer step ``step`` (0-based)."""
    kind = spec["kind"]
    if kind == "constant":
        return float(spec["lr"])
    if kind == "step":
        drops = sum(1 for m in spec["milestones"] if step >= int(m))
        return float(spec["lr"]) * float(spec["gamma"]) ** drops
    if kind == "cosine":
        base, low = float(spec["lr"]), float(spec.get("min_lr", 0.0))
        total, warm = int(spec["total_steps"]), int(spec.get("warmup_steps", 0))
        if step < warm:
            return base * (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return low + 0.5 * (base - low) * (1.0 + math.cos(math.pi * progress))
    if kind == "table":
        values = spec["values"]
        if not 0 <= step < len(values):
            raise PlanError(f"schedule table has {len(values)} entries; step {step} is outside it")
        return float(values[step])
    raise PlanError(f"unknown schedule kind {kind!r}")
