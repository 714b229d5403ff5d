"""Learning-rate schedules as committed, JSON-serialisable specs.

The plan holds the spec; :func:`lr_at` gives the base learning rate of every optimizer step
(0-based), so the whole schedule is fixed before training. Each parameter group trains with
``lr_at(t) * lr_scale`` (see :mod:`pol.optimizers`). Kinds and their fields (every field is
validated; unknown fields are refused, so nothing is signed that replay would ignore)::

    {"kind": "constant", "lr": 0.1}
    {"kind": "step", "lr": 0.1, "milestones": [1000, 1500], "gamma": 0.1}      # MultiStepLR
    {"kind": "exponential", "lr": 0.1, "gamma": 0.999}                           # lr * gamma**t
    {"kind": "cosine", "lr": 0.1, "total_steps": 2000, "min_lr": 0.0, "warmup_steps": 0}
    {"kind": "linear", "lr": 5e-5, "total_steps": 2000, "warmup_steps": 100, "min_lr": 0.0}
    {"kind": "polynomial", "lr": 5e-5, "total_steps": 2000, "warmup_steps": 100, "end_lr": 1e-7, "power": 1.0}
    {"kind": "one_cycle", "max_lr": 0.1, "total_steps": 2000, "pct_start": 0.3, "div_factor": 25.0,
     "final_div_factor": 1e4, "anneal": "cos"}
    {"kind": "table", "values": [0.1, 0.1, 0.05, ...]}   # one value per step

Warm-up (``cosine``: ``lr*(t+1)/warmup``; ``linear``/``polynomial``: ``lr*t/warmup``, as the
Hugging Face schedules of those names) and every formula are in :func:`lr_at`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping
from typing import Any

from pol.errors import PlanError

ScheduleSpec = dict[str, Any]
MAX_MILESTONES = 10_000
MAX_TABLE = 50_000_000


def _rate(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _positive(value: Any) -> bool:
    return _rate(value) and value > 0


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _fraction(value: Any) -> bool:
    return _rate(value) and 0 < value < 1


def _milestones(value: Any) -> bool:
    return (isinstance(value, list) and len(value) <= MAX_MILESTONES and all(map(_count, value))
            and value == sorted(value))


_LR = ("a non-negative number", _rate)
_STEPS = ("a step count", _count)
# kind -> field -> (what the value must be, check, required)
_FIELDS: dict[str, dict[str, tuple[str, Callable[[Any], bool], bool]]] = {
    "constant": {"lr": (*_LR, True)},
    "step": {"lr": (*_LR, True),
             "milestones": (f"a sorted list of at most {MAX_MILESTONES} step numbers", _milestones, True),
             "gamma": ("a non-negative number", _rate, True)},
    "exponential": {"lr": (*_LR, True), "gamma": ("a non-negative number", _rate, True)},
    "cosine": {"lr": (*_LR, True), "total_steps": (*_STEPS, True), "min_lr": (*_LR, False),
               "warmup_steps": (*_STEPS, False)},
    "linear": {"lr": (*_LR, True), "total_steps": (*_STEPS, True), "min_lr": (*_LR, False),
               "warmup_steps": (*_STEPS, False)},
    "polynomial": {"lr": (*_LR, True), "total_steps": (*_STEPS, True), "warmup_steps": (*_STEPS, False),
                   "end_lr": (*_LR, False), "power": ("a positive number", _positive, False)},
    "one_cycle": {"max_lr": (*_LR, True), "total_steps": (*_STEPS, True),
                  "pct_start": ("a number between 0 and 1", _fraction, False),
                  "div_factor": ("a positive number", _positive, False),
                  "final_div_factor": ("a positive number", _positive, False),
                  "anneal": ('"cos" or "linear"', lambda v: v in ("cos", "linear"), False)},
    "table": {"values": (f"a list of at most {MAX_TABLE} non-negative numbers",
                         lambda v: isinstance(v, list) and len(v) <= MAX_TABLE and all(map(_rate, v)), True)},
}
KINDS = tuple(_FIELDS)


def validate(spec: ScheduleSpec, num_steps: int | None = None) -> ScheduleSpec:
    """Check that ``spec`` is a schedule :func:`lr_at` can evaluate; returns a copy.

    With ``num_steps`` also checks that a table covers every step.
    """
    if not isinstance(spec, Mapping):
        raise PlanError(f"a learning-rate schedule must be an object, found {type(spec).__name__}")
    kind = spec.get("kind")
    if kind not in _FIELDS:
        raise PlanError(f"unknown learning-rate schedule kind {kind!r}; expected one of {', '.join(KINDS)}")
    fields = _FIELDS[kind]
    unknown = sorted(set(spec) - set(fields) - {"kind"})
    if unknown:
        raise PlanError(f"schedule {kind!r} does not take {unknown}; its fields are {sorted(fields)}")
    missing = sorted(name for name, (_, _, required) in fields.items() if required and name not in spec)
    if missing:
        raise PlanError(f"schedule {kind!r} is missing {missing}")
    for name, (what, ok, _) in fields.items():
        if name in spec and not ok(spec[name]):
            raise PlanError(f"schedule {kind!r}: {name} must be {what}, found {spec[name]!r:.40}")
    if kind == "table" and num_steps is not None and len(spec["values"]) < num_steps:
        raise PlanError(f"schedule table has {len(spec['values'])} entries for {num_steps} steps")
    return dict(spec)


def _power(base: float, exponent: int) -> float:
    """``base ** exponent``; a rate that overflows a float is infinite (no replay matches it)."""
    try:
        return base ** exponent
    except OverflowError:
        return math.inf


def _warmup(base: float, step: int, warm: int, offset: int) -> float | None:
    return base * (step + offset) / warm if step < warm else None


def lr_at(spec: ScheduleSpec, step: int) -> float:
    """Base learning rate used by optimizer step ``step`` (0-based)."""
    kind = spec["kind"]
    if kind == "constant":
        return float(spec["lr"])
    if kind == "step":  # milestones are sorted (validate): O(log m) per step, whatever a plan commits
        drops = bisect.bisect_right(spec["milestones"], step)
        return float(spec["lr"]) * _power(float(spec["gamma"]), drops)
    if kind == "exponential":
        return float(spec["lr"]) * _power(float(spec["gamma"]), step)
    if kind in ("cosine", "linear", "polynomial"):
        base, total, warm = float(spec["lr"]), int(spec["total_steps"]), int(spec.get("warmup_steps", 0))
        warm_lr = _warmup(base, step, warm, 1 if kind == "cosine" else 0)
        if warm_lr is not None:
            return warm_lr
        progress = min(1.0, (step - warm) / max(1, total - warm))
        if kind == "cosine":
            low = float(spec.get("min_lr", 0.0))
            return low + 0.5 * (base - low) * (1.0 + math.cos(math.pi * progress))
        if kind == "linear":
            low = float(spec.get("min_lr", 0.0))
            return low + (base - low) * (1.0 - progress)
        end, power = float(spec.get("end_lr", 1e-7)), float(spec.get("power", 1.0))
        if base <= end:
            return end
        return (base - end) * (1.0 - progress) ** power + end
    if kind == "one_cycle":
        return _one_cycle(spec, step)
    if kind == "table":
        values = spec["values"]
        if not 0 <= step < len(values):
            raise PlanError(f"schedule table has {len(values)} entries; step {step} is outside it")
        return float(values[step])
    raise PlanError(f"unknown schedule kind {kind!r}")


def _one_cycle(spec: ScheduleSpec, step: int) -> float:
    """torch.optim.lr_scheduler.OneCycleLR's two-phase rule, evaluated in closed form."""
    peak, total = float(spec["max_lr"]), int(spec["total_steps"])
    start = peak / float(spec.get("div_factor", 25.0))
    low = start / float(spec.get("final_div_factor", 1e4))
    rise = float(spec.get("pct_start", 0.3)) * total - 1
    anneal = spec.get("anneal", "cos")

    def blend(a: float, b: float, pct: float) -> float:
        if anneal == "cos":
            return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (b - a) * pct + a

    if step <= rise:
        return blend(start, peak, step / rise if rise > 0 else 1.0)
    fall = total - 1 - rise
    return blend(peak, low, min(1.0, (step - rise) / fall) if fall > 0 else 1.0)


def lr_sum(spec: ScheduleSpec, start: int, stop: int) -> float:
    """Sum of the base learning rates of steps ``start..stop-1`` (the codec's momentum predictor)."""
    return float(sum(lr_at(spec, t) for t in range(start, stop)))
