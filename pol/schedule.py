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
from typing import Any

from pol.errors import PlanError

ScheduleSpec = dict[str, Any]


def validate(spec: ScheduleSpec) -> ScheduleSpec:
    kind = spec.get("kind")
    required = {
        "constant": {"lr"},
        "step": {"lr", "milestones", "gamma"},
        "cosine": {"lr", "total_steps"},
        "table": {"values"},
    }
    if kind not in required:
        raise PlanError(f"unknown learning-rate schedule kind {kind!r}; expected one of {sorted(required)}")
    missing = required[kind] - set(spec)
    if missing:
        raise PlanError(f"schedule {kind!r} is missing {sorted(missing)}")
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
