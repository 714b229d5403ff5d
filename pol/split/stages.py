"""Stage modules: built-in splits of the digits tasks, user-named stages, per-stage seeding.

A built-in stage is named ``"<task>[<stage>/<stages>]"``, e.g. ``"digits-mlp[1/3]"``: the
task's split model is an ``nn.Sequential`` of named layers, cut at fixed points. Stage ``s`` is
built on CPU right after ``torch.manual_seed(derive_seed(seed, "split-init", s))``, from its own
layers only, so a node never needs another stage's code or weights to build (or verify) its own.

Any other stage spec is ``"package.module:callable"`` returning an ``nn.Module``; as everywhere
in this project, only the person running the code names code to import (a verifier never
imports a name it read from a proof).

The split models (``split_model``) are the *unsplit* reference models: the stages of a cut,
concatenated, are an ``nn.Sequential`` whose ``state_dict`` names are ``<layer>.<param>``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from pol.errors import DataUnavailableError, PlanError
from pol.hashing import derive_seed

_BUILTIN = re.compile(r"^(?P<task>[a-z0-9-]+)\[(?P<stage>\d+)/(?P<stages>\d+)\]$")


def _mlp_layers(hidden: int = 64, hidden2: int = 32) -> list[tuple[str, Callable[[], Any]]]:
    from torch import nn

    return [("fc1", lambda: nn.Linear(64, hidden)), ("act1", nn.ReLU),
            ("fc2", lambda: nn.Linear(hidden, hidden2)), ("act2", nn.ReLU),
            ("fc3", lambda: nn.Linear(hidden2, 10))]


def _cnn_layers(dropout: float = 0.1) -> list[tuple[str, Callable[[], Any]]]:
    from torch import nn

    return [("conv1", lambda: nn.Conv2d(1, 16, 3, padding=1)), ("bn1", lambda: nn.BatchNorm2d(16)),
            ("act1", nn.ReLU), ("conv2", lambda: nn.Conv2d(16, 32, 3, padding=1)), ("act2", nn.ReLU),
            ("pool", lambda: nn.MaxPool2d(2)), ("flat", nn.Flatten), ("drop", lambda: nn.Dropout(dropout)),
            ("fc", lambda: nn.Linear(32 * 4 * 4, 10))]


# task -> (layer factory, {number of stages: cut points (layer positions where a stage starts)})
BUILTIN_SPLITS: dict[str, tuple[Callable[..., list[tuple[str, Callable[[], Any]]]], dict[int, list[int]]]] = {
    # 64 -> 64 -> 32 -> 10: three weight layers, so that each of three stages holds weights.
    "digits-mlp": (_mlp_layers, {2: [2], 3: [2, 4]}),
    # pol.models.SmallCNN as a Sequential: conv+BatchNorm | conv+pool | dropout+fc.
    "digits-cnn": (_cnn_layers, {2: [6], 3: [3, 6]}),
}


def builtin_stage_spec(task: str, stage: int, stages: int) -> str:
    return f"{task}[{stage}/{stages}]"


def builtin_stage_counts(task: str) -> list[int]:
    if task not in BUILTIN_SPLITS:
        raise DataUnavailableError(f"no built-in split of {task!r}; built-in: {', '.join(BUILTIN_SPLITS)}")
    return sorted(BUILTIN_SPLITS[task][1])


def _builtin_layers(task: str, stage: int, stages: int, kwargs: Mapping[str, Any]) -> list[tuple[str, Callable[[], Any]]]:
    if task not in BUILTIN_SPLITS:
        raise DataUnavailableError(f"no built-in split of {task!r}; built-in: {', '.join(BUILTIN_SPLITS)}")
    factory, cuts = BUILTIN_SPLITS[task]
    if stages not in cuts:
        raise PlanError(f"{task} has built-in splits into {sorted(cuts)} stages, not {stages}")
    if not 0 <= stage < stages:
        raise PlanError(f"stage {stage} is outside 0..{stages - 1}")
    try:
        layers = factory(**kwargs)
    except TypeError as exc:
        raise DataUnavailableError(f"cannot build {task} with kwargs {sorted(kwargs)}: {exc}") from None
    bounds = [0, *cuts[stages], len(layers)]
    return layers[bounds[stage]:bounds[stage + 1]]


def is_builtin(spec: str) -> bool:
    return _BUILTIN.match(spec) is not None


def resolve_stage_spec(plan_spec: str, user_spec: str | None) -> str:
    """Built-in stage names resolve to this package; any other code must be named by the user."""
    if user_spec:
        return user_spec
    if is_builtin(plan_spec):
        return plan_spec
    raise DataUnavailableError(
        f"stage module {plan_spec!r} is not built in; name the code yourself (--stage-module "
        "INDEX=module:callable): a verifier never imports code named inside a proof")


def build_stage(spec: str, kwargs: Mapping[str, Any] | None, seed: int, stage: int) -> Any:
    """The initial stage module: built on CPU right after seeding torch for this stage."""
    import torch
    from torch import nn

    kwargs = dict(kwargs or {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "split-init", stage))
        match = _BUILTIN.match(spec)
        if match:
            layers = _builtin_layers(match["task"], int(match["stage"]), int(match["stages"]), kwargs)
            return nn.Sequential(OrderedDict((name, make()) for name, make in layers))
        from pol.tasks import _call_with_kwargs, import_callable

        module = _call_with_kwargs(import_callable(spec), kwargs, spec, "stage module")
    if not isinstance(module, nn.Module):
        raise DataUnavailableError(f"{spec!r} did not return a torch.nn.Module")
    return module


def split_model(task: str, stages: int, seed: int, kwargs: Mapping[str, Any] | None = None) -> Any:
    """The unsplit model: every stage built with its own seed, concatenated in one Sequential."""
    from torch import nn

    return nn.Sequential(OrderedDict(
        (f"stage{s}", build_stage(builtin_stage_spec(task, s, stages), kwargs, seed, s)) for s in range(stages)))
