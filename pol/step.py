"""The committed training step: what one optimizer step does, as a JSON spec in the plan.

Replay must reproduce the step bitwise, so everything that changes it is part of the plan and
performed identically by the recorder's checks and the verifier's replay::

    {"loss": {"name": "cross_entropy", "kwargs": {"label_smoothing": 0.1}},
     "batch": {"inputs": [0], "target": 1},        # tuple samples: positions; dict samples: keys
     "output": null,                                # or "logits" (dict key / attribute) or 0 (tuple index)
     "clip": null,                                  # or {"kind": "norm", "max_norm": 1.0, "norm_type": 2.0}
                                                    #    {"kind": "value", "clip_value": 0.5}
     "autocast": null,                              # or {"device_type": "cpu", "dtype": "bfloat16"}
     "accumulation": 1}                             # micro-batches per optimizer step

The ``training_step`` loss (Lightning modules) hands the whole micro-batch to the model's own
``training_step(batch, batch_idx)`` and trains on the loss it returns (a tensor, or a mapping's
``"loss"``, as Lightning reads it); its batch spec is ``{"inputs": [], "target": null}``, its
output ``null``, and ``batch_idx`` is the micro-batch's position in its epoch (micro-batch
``t * accumulation + m`` of the run, modulo the micro-batches per epoch).

One step (:func:`run_step`)::

    zero_grad
    for each of the `accumulation` micro-batches m:
        torch.manual_seed(derive_seed(run_seed, "step", t, m))
        with autocast:  out = select(model(*inputs) or model(**inputs), output)
                        loss = out if loss is "model_output" else loss_fn(out, target, **kwargs)
                        (loss "training_step": loss = model.training_step(batch, batch_idx))
        (loss / accumulation).backward()        # no division when accumulation == 1
    clip (over model.parameters(), in order), optimizer.step()

Loss functions are built in (:data:`BUILTIN_LOSSES`) or a user callable ``"module:callable"``
that the *verifier's user* names too (a proof never names code to import).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pol.errors import PlanError

BUILTIN_LOSSES = ("cross_entropy", "mse", "nll", "l1", "smooth_l1", "huber", "bce_with_logits", "kl_div",
                  "model_output", "training_step")
# The keyword arguments each built-in accepts (others are refused: they would be signed and ignored).
_LOSS_KWARGS: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("label_smoothing", "ignore_index", "reduction"),
    "nll": ("ignore_index", "reduction"),
    "mse": ("reduction",), "l1": ("reduction",),
    "smooth_l1": ("beta", "reduction"), "huber": ("delta", "reduction"),
    "bce_with_logits": ("reduction",), "kl_div": ("reduction", "log_target"),
    "model_output": (), "training_step": (),
}
AUTOCAST_DTYPES = ("bfloat16",)
MAX_ACCUMULATION = 4096

Selector = int | str | None


def default_spec(loss: str = "cross_entropy") -> dict[str, Any]:
    return {"loss": {"name": loss, "kwargs": {}}, "batch": {"inputs": [0], "target": 1}, "output": None,
            "clip": None, "autocast": None, "accumulation": 1}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _selector_ok(v: Any) -> bool:
    return v is None or (_is_int(v) and 0 <= v < 64) or (isinstance(v, str) and 0 < len(v) <= 128)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _json_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, str)) or _finite(v)


def validate(spec: Any) -> dict[str, Any]:
    """Check a step spec; returns it. Unknown keys anywhere are refused."""
    if not isinstance(spec, Mapping):
        raise PlanError(f"the step spec must be an object, found {type(spec).__name__}")
    keys = {"loss", "batch", "output", "clip", "autocast", "accumulation"}
    if set(spec) != keys:
        raise PlanError(f"the step spec must have exactly the fields {sorted(keys)}; found {sorted(spec)}")
    loss = spec["loss"]
    if not isinstance(loss, Mapping) or set(loss) not in ({"name", "kwargs"}, {"spec", "kwargs"}):
        raise PlanError('step.loss must be {"name": built-in, "kwargs": {...}} or {"spec": "module:callable", "kwargs": {...}}')
    kwargs = loss["kwargs"]
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) and _json_scalar(v) for k, v in kwargs.items()):
        raise PlanError("step.loss.kwargs must be an object of JSON scalars")
    if "name" in loss:
        if loss["name"] not in BUILTIN_LOSSES:
            raise PlanError(f"unknown loss {loss['name']!r}; built in: {', '.join(BUILTIN_LOSSES)} "
                            "(or name your own as module:callable)")
        bad = sorted(set(kwargs) - set(_LOSS_KWARGS[loss["name"]]))
        if bad:
            raise PlanError(f"loss {loss['name']!r} does not take {bad}; it takes {list(_LOSS_KWARGS[loss['name']])}")
    elif not (isinstance(loss["spec"], str) and ":" in loss["spec"]):
        raise PlanError("step.loss.spec must be 'module:callable'")
    batch = spec["batch"]
    if not isinstance(batch, Mapping) or set(batch) != {"inputs", "target"}:
        raise PlanError('step.batch must be {"inputs": [...], "target": ...}')
    if loss.get("name") == "training_step":  # the whole batch goes to the module; nothing else to select
        if batch["inputs"] != [] or batch["target"] is not None or spec["output"] is not None:
            raise PlanError('the training_step loss takes the whole batch: step.batch must be {"inputs": [], '
                            '"target": null} and step.output null')
        _validate_rest(spec)
        return dict(spec)
    inputs = batch["inputs"]
    if not isinstance(inputs, list) or not inputs or len(inputs) > 64 or not all(
            _selector_ok(i) and i is not None for i in inputs):
        raise PlanError("step.batch.inputs must be a non-empty list of positions (tuple samples) or keys (dict samples)")
    if len({type(i) for i in inputs}) != 1 or len(set(inputs)) != len(inputs):
        raise PlanError("step.batch.inputs must be all positions or all keys, without repeats")
    if not _selector_ok(batch["target"]):
        raise PlanError("step.batch.target must be a position, a key or null")
    if batch["target"] is None and loss.get("name") != "model_output":
        raise PlanError("step.batch.target may be null only with the model_output loss")
    if not _selector_ok(spec["output"]):
        raise PlanError("step.output must be null, a key or a position")
    _validate_rest(spec)
    return dict(spec)


def _validate_rest(spec: Mapping[str, Any]) -> None:
    """Clipping, autocast and accumulation (the same for every loss)."""
    _validate_clip(spec["clip"])
    autocast = spec["autocast"]
    if autocast is not None:
        if not isinstance(autocast, Mapping) or set(autocast) != {"device_type", "dtype"}:
            raise PlanError('step.autocast must be null or {"device_type": ..., "dtype": ...}')
        if autocast["dtype"] not in AUTOCAST_DTYPES:
            raise PlanError(f"autocast dtype {autocast['dtype']!r} is not supported (float16 needs a GradScaler, whose "
                            f"skipped steps and scale state are not recorded); use one of {AUTOCAST_DTYPES}")
        if autocast["device_type"] not in ("cpu", "cuda"):
            raise PlanError("step.autocast.device_type must be cpu or cuda")
    acc = spec["accumulation"]
    if not _is_int(acc) or not 1 <= acc <= MAX_ACCUMULATION:
        raise PlanError(f"step.accumulation must be an integer in 1..{MAX_ACCUMULATION}")


def _validate_clip(clip: Any) -> None:
    if clip is None:
        return
    if not isinstance(clip, Mapping) or clip.get("kind") not in ("norm", "value"):
        raise PlanError('step.clip must be null, {"kind": "norm", "max_norm", "norm_type"} or {"kind": "value", "clip_value"}')
    expected = {"kind", "max_norm", "norm_type"} if clip["kind"] == "norm" else {"kind", "clip_value"}
    if set(clip) != expected:
        raise PlanError(f"step.clip of kind {clip['kind']!r} takes exactly {sorted(expected)}")
    for name in expected - {"kind"}:
        value = clip[name]
        if not _finite(value) or value <= 0:
            if not (name == "norm_type" and value == "inf"):
                raise PlanError(f"step.clip.{name} must be a positive number, found {value!r:.40}")


# -- runtime --------------------------------------------------------------------------------
def _builtin_loss(name: str) -> Callable[..., Any]:
    from torch.nn import functional as F

    table: dict[str, Callable[..., Any]] = {
        "cross_entropy": F.cross_entropy, "mse": F.mse_loss, "nll": F.nll_loss, "l1": F.l1_loss,
        "smooth_l1": F.smooth_l1_loss, "huber": F.huber_loss, "bce_with_logits": F.binary_cross_entropy_with_logits,
        "kl_div": F.kl_div,
    }
    return table[name]


def loss_callable(spec: Mapping[str, Any], user_loss: str | None = None) -> Callable[..., Any] | None:
    """The loss function of a step spec (None for ``model_output``). A user-defined loss must be
    named by whoever runs this (``user_loss``), never imported from the plan."""
    loss = spec["loss"]
    if "name" in loss:
        if user_loss:
            raise PlanError(f"the plan uses the built-in loss {loss['name']!r}; do not name another (--loss)")
        return None if loss["name"] in ("model_output", "training_step") else _builtin_loss(loss["name"])
    from pol.tasks import import_callable

    if not user_loss:
        from pol.errors import DataUnavailableError

        raise DataUnavailableError(f"the plan's loss is the user function {loss['spec']!r}; name it yourself with "
                                   "--loss module:callable (a verifier never imports code named inside a proof)")
    return import_callable(user_loss)


def select(value: Any, selector: Selector) -> Any:
    """``value[selector]`` for dicts, tuples and objects with the attribute (e.g. Hugging Face outputs)."""
    if selector is None:
        return value
    try:
        if isinstance(selector, str) and not isinstance(value, Mapping):
            return getattr(value, selector)
        return value[selector]
    except (KeyError, IndexError, AttributeError, TypeError):
        raise PlanError(f"cannot select {selector!r} from a {type(value).__name__}; the plan's step spec does not "
                        "match what the model or the data returns") from None


@dataclass
class Step:
    """A step spec bound to its loss function, ready to run."""

    spec: dict[str, Any]
    loss_fn: Callable[..., Any] | None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], user_loss: str | None = None) -> "Step":
        valid = validate(spec)
        return cls(valid, loss_callable(valid, user_loss))

    @property
    def accumulation(self) -> int:
        return int(self.spec["accumulation"])

    def inputs_and_target(self, batch: Any) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
        sel = self.spec["batch"]
        if isinstance(batch, Mapping):
            if not all(isinstance(k, str) for k in sel["inputs"]):
                raise PlanError("the batch is a dict but step.batch.inputs are positions")
            args, kwargs = (), {k: select(batch, k) for k in sel["inputs"]}
        else:
            if not isinstance(batch, Sequence) or not all(isinstance(k, int) for k in sel["inputs"]):
                raise PlanError("the batch is not a dict, so step.batch.inputs must be positions")
            args, kwargs = tuple(select(batch, k) for k in sel["inputs"]), {}
        target = select(batch, sel["target"]) if sel["target"] is not None else None
        return args, kwargs, target

    @property
    def uses_training_step(self) -> bool:
        return self.spec["loss"].get("name") == "training_step"

    def loss(self, model: Any, batch: Any, batch_idx: int | None = None) -> Any:
        if self.uses_training_step:
            return training_step_loss(model, batch, batch_idx)
        args, kwargs, target = self.inputs_and_target(batch)
        out = select(model(*args, **kwargs), self.spec["output"])
        if self.loss_fn is None:
            return out
        return self.loss_fn(out, target, **self.spec["loss"]["kwargs"])

    def forward_backward(self, model: Any, batch: Any, batch_idx: int | None = None) -> Any:
        """Loss of one micro-batch (under autocast when committed), backward; returns the detached loss."""
        import torch

        autocast = self.spec["autocast"]
        if autocast is not None:
            with torch.autocast(device_type=autocast["device_type"], dtype=getattr(torch, autocast["dtype"])):
                loss = self.loss(model, batch, batch_idx)
        else:
            loss = self.loss(model, batch, batch_idx)
        acc = self.accumulation
        (loss / acc if acc > 1 else loss).backward()
        return loss.detach()

    def clip(self, model: Any) -> None:
        clip_gradients(model, self.spec["clip"])


def training_step_loss(model: Any, batch: Any, batch_idx: int | None) -> Any:
    """``model.training_step(batch, batch_idx)``'s loss, read as Lightning reads it (outside a Trainer:
    ``self.log`` calls are no-ops there, and a step that needs ``self.trainer`` cannot be replayed)."""
    import warnings

    import torch

    if batch_idx is None:
        raise PlanError("the training_step loss needs the micro-batch's index in its epoch")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        try:
            out = model.training_step(batch, batch_idx)
        except RuntimeError as exc:
            if "not attached to a `Trainer`" in str(exc):
                raise PlanError("training_step uses self.trainer, which replay does not have: compute the loss from "
                                "the batch (and batch_idx) alone") from None
            raise
    loss = out.get("loss") if isinstance(out, Mapping) else out
    if not isinstance(loss, torch.Tensor):
        raise PlanError(f"training_step returned {type(out).__name__}; the recorder needs a loss tensor (or a dict with "
                        "'loss') every step: a skipped step cannot be replayed")
    return loss


def clip_gradients(model: Any, clip: Mapping[str, Any] | None) -> None:
    """The committed clipping, over ``model.parameters()`` in order (as the recorder applies it)."""
    import torch

    if clip is None:
        return
    params = list(model.parameters())
    if clip["kind"] == "norm":
        norm_type = float("inf") if clip["norm_type"] == "inf" else float(clip["norm_type"])
        torch.nn.utils.clip_grad_norm_(params, float(clip["max_norm"]), norm_type=norm_type)
    else:
        torch.nn.utils.clip_grad_value_(params, float(clip["clip_value"]))


def seed_micro_batch(run_seed: int, t: int, m: int) -> None:
    """The committed per-micro-batch seed: ``torch.manual_seed(derive_seed(run_seed, "step", t, m))``.

    Same generator states as ``torch.manual_seed`` (CPU, and CUDA when it is in use), at ~2 us on
    the CPU instead of ~200 us: ``torch.manual_seed`` also walks every other device type.
    """
    import torch

    from pol.hashing import derive_seed

    seed = derive_seed(run_seed, "step", t, m)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


def run_step(step: Step, model: Any, optimizer: Any, micro_batches: Sequence[Any],
             reseed: Callable[[int], None], batch_idx: Callable[[int], int] | None = None) -> Any:
    """One optimizer step over ``micro_batches``; ``reseed(m)`` runs before micro-batch m, and
    ``batch_idx(m)`` is its index in the epoch (used by the training_step loss).
    Returns the detached loss of the last micro-batch (no device sync)."""
    optimizer.zero_grad(set_to_none=True)
    loss = None
    for m, batch in enumerate(micro_batches):
        reseed(m)
        loss = step.forward_backward(model, batch, batch_idx(m) if batch_idx is not None else None)
    step.clip(model)
    optimizer.step()
    return loss
