"""A node's checkpoint: the weights and optimizer state of every stage it holds.

Names follow :mod:`pol.state` with the stage in the parameter path, so the lossless codec
(:mod:`pol.codec`, momentum predicted from the weight change) and the two-part state digest
(:func:`pol.hashing.state_digest`) apply unchanged::

    model/stage<s>.<state_dict key>
    optim/state/stage<s>.<parameter name>/<key>
    optim/lr/stage<s>                     float64: the learning rate of the last step taken
    meta/step                             int64

No RNG state: every stage forward reseeds torch from the plan (docs/SPLIT.md, Randomness).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pol.hashing import OPTIMIZER_STATE
from pol.state import MODEL, State, capture, param_names, restore

_LR = "optim/lr"


@dataclass
class StageHolder:
    """One stage as a node holds it: the module, its optimizer and its committed schedule."""

    index: int
    module: Any
    optimizer: Any
    lr_schedule: dict[str, Any]
    names: list[str]

    @classmethod
    def create(cls, index: int, module: Any, optimizer_spec: dict[str, Any], lr_schedule: dict[str, Any],
               device: Any = "cpu") -> "StageHolder":
        from pol.schedule import lr_at
        from pol.training import optimizer_class

        module = module.to(device)
        module.train()
        optimizer = optimizer_class(optimizer_spec["type"])(
            module.parameters(), lr=lr_at(lr_schedule, 0), **optimizer_spec.get("hparams", {}))
        return cls(index, module, optimizer, lr_schedule, param_names(module, optimizer))

    @property
    def prefix(self) -> str:
        return f"stage{self.index}."


def capture_node(stages: list[StageHolder], step: int) -> State:
    state: State = {}
    for holder in stages:
        for key, value in capture(holder.module, holder.optimizer, step, holder.names).items():
            if key.startswith(MODEL):
                state[MODEL + holder.prefix + key[len(MODEL):]] = value
            elif key.startswith(OPTIMIZER_STATE):
                state[OPTIMIZER_STATE + holder.prefix + key[len(OPTIMIZER_STATE):]] = value
            elif key == _LR:
                state[f"{_LR}/stage{holder.index}"] = value
    state["meta/step"] = np.asarray(step, dtype=np.int64)
    return state


def stage_part(state: State, holder: StageHolder) -> State:
    """The part of a node state that belongs to one stage, named as :mod:`pol.state` names it."""
    part: State = {}
    for key, value in state.items():
        for root in (MODEL, OPTIMIZER_STATE):
            if key.startswith(root + holder.prefix):
                part[root + key[len(root) + len(holder.prefix):]] = value
    lr_key = f"{_LR}/stage{holder.index}"
    if lr_key in state:
        part[_LR] = state[lr_key]
    return part


def restore_node(stages: list[StageHolder], state: State, device: Any = "cpu") -> None:
    for holder in stages:
        restore(holder.module, holder.optimizer, stage_part(state, holder), holder.names, device)


def stage_weights(state: State, stage: int) -> State:
    """Weights of one stage named as in its ``state_dict()``."""
    prefix = f"{MODEL}stage{stage}."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def node_weights(state: State) -> State:
    """All weights of a node, named ``stage<s>.<key>`` (the node's signed final weights)."""
    return {k[len(MODEL):]: v for k, v in state.items() if k.startswith(MODEL)}
