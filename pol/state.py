"""Checkpoint state: model, optimizer and RNG as one flat, named set of numpy arrays.

Names: ``model/<state_dict key>`` (parameters and buffers), ``optim/state/<param>/<key>``,
``optim/lr``, ``rng/torch_cpu`` (and ``rng/torch_cuda``), ``meta/step``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pol.errors import PlanError
from pol.hashing import OPTIMIZER_STATE

State = dict[str, np.ndarray]
MODEL, OPTIM_STATE = "model/", OPTIMIZER_STATE


def _np(t: Any) -> np.ndarray:
    import torch

    t = t.detach()
    if t.dtype == torch.bfloat16:
        raise PlanError("bfloat16 state is not supported by format v2; train in float32 or float16")
    return t.to("cpu", copy=True).numpy()


def param_names(model: Any, optimizer: Any) -> list[str]:
    """Parameter names in the optimizer's order (all groups, in order): the indices of its state_dict.
    The optimizer must hold exactly the model's parameters."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    names = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in by_id:
                raise PlanError("the optimizer holds a tensor that is not a parameter of the model")
            names.append(by_id[id(p)])
    if sorted(names) != sorted(by_id.values()) or len(set(names)) != len(names):
        raise PlanError("the optimizer must hold each of the model's parameters exactly once "
                        "(create it with model.parameters() or parameter groups covering them all)")
    return names


def model_weights(state: State) -> State:
    """The ``model/`` part, named as in ``model.state_dict()``."""
    return {k[len(MODEL):]: v for k, v in state.items() if k.startswith(MODEL)}


def capture(model: Any, optimizer: Any, step: int, names: list[str], lr: float | None = None) -> State:
    """The state after ``step`` steps; ``lr`` is the committed base learning rate of the last step
    (default: the first parameter group's current rate)."""
    import torch

    state: State = {MODEL + k: _np(v) for k, v in model.state_dict().items()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for idx, p in enumerate(params):  # what optimizer.state_dict()["state"] holds, without packing the groups
        per_param = optimizer.state.get(p)
        if not per_param:
            continue
        for key, value in per_param.items():
            if torch.is_tensor(value):
                state[f"{OPTIM_STATE}{names[idx]}/{key}"] = _np(value)
            elif value is not None:
                state[f"{OPTIM_STATE}{names[idx]}/{key}"] = np.asarray(value, dtype=np.float64)
    state["optim/lr"] = np.asarray(optimizer.param_groups[0]["lr"] if lr is None else lr, dtype=np.float64)
    state["rng/torch_cpu"] = torch.get_rng_state().numpy().copy()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["rng/torch_cuda"] = torch.cuda.get_rng_state().numpy().copy()
    state["meta/step"] = np.asarray(step, dtype=np.int64)
    return state


def restore(model: Any, optimizer: Any, state: State, names: list[str], device: Any = "cpu") -> None:
    """Load a checkpoint into a model (already on ``device``) and its optimizer (learning rates
    are set by the caller, from the committed schedule)."""
    import torch

    weights = {k: torch.from_numpy(np.array(v)) for k, v in model_weights(state).items()}
    model.load_state_dict(weights, strict=True)
    index = {n: i for i, n in enumerate(names)}
    per_param: dict[int, dict[str, Any]] = {}
    for key, value in state.items():
        if not key.startswith(OPTIM_STATE):
            continue
        pname, _, field = key[len(OPTIM_STATE):].rpartition("/")
        if pname not in index:
            raise PlanError(f"optimizer state names an unknown parameter {pname!r}")
        per_param.setdefault(index[pname], {})[field] = torch.from_numpy(np.array(value)).to(device)
    sd = optimizer.state_dict()
    sd["state"] = per_param
    optimizer.load_state_dict(sd)
    if "rng/torch_cpu" in state:
        torch.set_rng_state(torch.from_numpy(np.array(state["rng/torch_cpu"])))
