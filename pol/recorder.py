"""The Recorder: wraps an ordinary PyTorch training loop and records a signed proof.

Example::

    with pol.Recorder("run.pol.h5", key="keys/trainer.key", every=10, seed=0,
                      task="digits-mlp", epochs=1) as rec:
        model, optimizer, loader = rec.attach(model=None, optimizer=make_opt, data_loader=loader)
        for x, y in loader:
            optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()

The recorder owns what a verifier must reproduce: it rebuilds the loader around its seeded
batch schedule, builds (or checks) the initial model from the seed, sets the committed
learning rate and reseeds torch before every micro-batch, and checkpoints every ``every`` steps
from an optimizer step hook. The plan (including the committed step: loss, batch layout,
output selection, clipping, autocast, gradient accumulation) is signed before the first step;
the chain head at the end.

It also checks that the loop does what the plan says, so that it never signs a proof its own
verifier would reject: gradients changed between backward and ``optimizer.step()`` without a
committed clip (or clipped differently) stop the run at that step, and at the first checkpoint
the recorder replays the first segment itself and stops with a diagnosis if the replay is not
bitwise equal (:mod:`pol.selfcheck`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pol import optimizers, schedule
from pol import step as step_spec
from pol.assemble import FINAL_DOMAIN, PLAN_DOMAIN, finish, open_writer
from pol.datacommit import SAMPLE_DIGEST, data_root, sample_fields
from pol.envinfo import environment_fingerprint
from pol.errors import PlanError
from pol.hashing import state_digest
from pol.keys import load_signing_key
from pol.plan import Plan, new_nonce, utc_now
from pol.proof_file import ProofWriter
from pol.sampler import BatchSchedule
from pol.state import capture, param_names
from pol.step import seed_micro_batch
from pol.stepdigest import StepHasher, digest_of_snapshot
from pol.tasks import get_task, load_data, seeded_model
from pol.writer import BackgroundChainWriter

__all__ = ["Recorder", "RecordedLoader", "PLAN_DOMAIN", "FINAL_DOMAIN"]


def _loss_spec(loss: str | Mapping[str, Any], loss_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    if isinstance(loss, Mapping):
        return dict(loss)
    kwargs = dict(loss_kwargs or {})
    if ":" in loss:
        return {"spec": loss, "kwargs": kwargs}
    return {"name": loss, "kwargs": kwargs}


def _clip_spec(clip: Any) -> dict[str, Any] | None:
    """``clip=1.0`` (norm clipping, L2), a dict as in :mod:`pol.step`, or None."""
    if clip is None or isinstance(clip, Mapping):
        return dict(clip) if clip is not None else None
    if isinstance(clip, (int, float)) and not isinstance(clip, bool):
        return {"kind": "norm", "max_norm": float(clip), "norm_type": 2.0}
    raise PlanError(f"clip must be a max norm, a dict as in pol.step, or None; found {clip!r:.40}")


def _autocast_spec(autocast: Any, device_type: str) -> dict[str, Any] | None:
    if autocast is None or autocast is False:
        return None
    if isinstance(autocast, str):
        return {"device_type": device_type, "dtype": autocast}
    if isinstance(autocast, Mapping):
        return dict(autocast)
    raise PlanError("autocast must be a dtype name ('bfloat16'), a dict {device_type, dtype}, or None")


def _autocast_dtype(autocast: Any) -> Any:
    return autocast.get("dtype") if isinstance(autocast, Mapping) else autocast


class Recorder:
    """Record a proof-of-learning around an existing training loop."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: str | os.PathLike[str],
        every: int,
        seed: int,
        task: str | None = None,
        model_spec: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        data_spec: str | None = None,
        data_kwargs: dict[str, Any] | None = None,
        epochs: int | None = None,
        steps: int | None = None,
        lr_schedule: dict[str, Any] | None = None,
        loss: str | Mapping[str, Any] = "cross_entropy",
        loss_kwargs: dict[str, Any] | None = None,
        inputs: list[int | str] | None = None,
        target: int | str | None = 1,
        output: int | str | None = None,
        clip: Any = None,
        autocast: Any = None,
        accumulation: int = 1,
        step_digests: bool = True,
        self_check: bool = True,
        nonce: str | None = None,
        codec: str = "delta-zstd",
        keyframe_every: int = 50,
        compact_anchor_every: int | None = None,
        overwrite: bool = False,
        device: str | None = None,
    ):
        if not isinstance(every, int) or every <= 0:
            raise PlanError(f"every (k) must be a positive number of steps, got {every!r}")
        if (epochs is None) == (steps is None):
            raise PlanError("give exactly one of epochs= or steps=")
        for name, value in (("epochs", epochs), ("steps", steps)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise PlanError(f"{name} must be a positive integer, got {value!r}")
        self.path = Path(path)
        self._signing_key = load_signing_key(key)
        self.every, self.seed = every, int(seed)
        self.model_spec = model_spec or task
        self.data_spec = data_spec or task
        self.model_kwargs, self.data_kwargs = dict(model_kwargs or {}), dict(data_kwargs or {})
        if task is not None:
            get_task(task)
        self.epochs, self.steps = epochs, steps
        self.lr_schedule = schedule.validate(lr_schedule) if lr_schedule else None
        self._step_options = dict(loss=_loss_spec(loss, loss_kwargs), inputs=inputs, target=target, output=output,
                                  clip=_clip_spec(clip), autocast=autocast, accumulation=accumulation)
        self.step_digests, self.self_check = bool(step_digests), bool(self_check)
        if nonce is not None:
            if not (isinstance(nonce, str) and len(nonce) == 32 and all(c in "0123456789abcdef" for c in nonce)):
                raise PlanError("nonce must be 32 lowercase hex digits (default: a fresh random one)")
            self._nonce_value = nonce
        self.codec, self.keyframe_every = codec, keyframe_every
        self.compact_anchor_every = compact_anchor_every
        self.overwrite = overwrite
        self.device = device
        self.plan: Plan | None = None
        self._writer: BackgroundChainWriter | None = None
        self._proof: ProofWriter | None = None
        self._closed = False
        self.step = 0            # optimizer steps taken
        self._micro = 0          # training forward passes (micro-batches) started
        self._yielded = 0        # micro-batches handed to the loop by the recorded loader
        self._last_lr: float | None = None
        self._last_checkpoint_step = 0
        self._guard: Any = None
        self._self_checker: Any = None
        self._external_lr = False  # an integration whose framework also steps an LR scheduler: the recorder overrides it

    _CONFIGURABLE = {"loss": "cross_entropy", "loss_kwargs": None, "inputs": None, "target": 1, "output": None,
                     "clip": None, "autocast": None, "accumulation": 1, "lr_schedule": None}

    def configure(self, **options: Any) -> None:
        """Set step and schedule options (as the constructor's ``loss``, ``loss_kwargs``, ``inputs``,
        ``target``, ``output``, ``clip``, ``autocast``, ``accumulation``, ``lr_schedule``) before
        :meth:`attach`. Framework integrations read them from the framework's own settings; an
        option also given to the constructor with another value is refused (set it in one place)."""
        if self.plan is not None:
            raise PlanError("configure() must run before attach(): the plan is already signed")
        unknown = sorted(set(options) - set(self._CONFIGURABLE))
        if unknown:
            raise PlanError(f"configure() does not take {unknown}")
        current = dict(self._step_options, lr_schedule=self.lr_schedule)
        current["loss_kwargs"] = current["loss"].get("kwargs") or None
        current["loss"] = current["loss"].get("name") or current["loss"].get("spec")
        for name, value in options.items():
            default = self._CONFIGURABLE[name]
            mine = current[name]
            if name == "clip":
                mine, value = _clip_spec(mine), _clip_spec(value)
            same = mine == value
            if name == "autocast" and mine is not None and value is not None:  # "bfloat16" or {device_type, dtype}
                same = _autocast_dtype(mine) == _autocast_dtype(value)
            if mine != default and not same:
                raise PlanError(f"{name} is set on the Recorder ({mine!r}) and by the framework ({value!r}); set it in "
                                "one place")
        if "lr_schedule" in options:
            spec = options.pop("lr_schedule")
            self.lr_schedule = schedule.validate(spec) if spec else None
        if "loss" in options or "loss_kwargs" in options:
            loss = options.pop("loss", current["loss"])
            self._step_options["loss"] = _loss_spec(loss, options.pop("loss_kwargs", current["loss_kwargs"]))
        if "clip" in options:
            options["clip"] = _clip_spec(options["clip"])
        self._step_options.update(options)

    # -- set-up -----------------------------------------------------------------------------
    def attach(self, *, model: Any = None, optimizer: Any, data_loader: Any,
               external_step_hooks: bool = False,
               framework_lr_scheduler: bool = False,
               external_micro_batch_hook: bool = False) -> tuple[Any, Any, "RecordedLoader"]:
        """Wrap the user's model, optimizer and loader; commits and signs the plan.

        ``model=None`` builds the model from ``model_spec`` and the run seed (derived from
        ``seed``, the signer's key and a fresh nonce). A model passed in must equal that build
        bitwise: build it with ``rec.initial_model()``. With ``device="cuda"`` the recorder moves
        the model there before building the optimizer, so the plan records the device actually
        trained on; move each batch to the same device in your loop. ``optimizer`` may be a
        ``torch.optim.Optimizer`` over the model's parameters (any parameter groups) or a
        callable ``params -> Optimizer`` (needed when ``model=None``).

        Per micro-batch the recorder reseeds torch (and at each step's first micro-batch sets the
        committed learning rate) from a forward pre-hook on the model, so loaders that fetch ahead
        (Lightning, Accelerate) do not shift the seeds. ``external_step_hooks``: a framework that
        runs forward and backward inside ``optimizer.step(closure)`` (Lightning) calls
        :meth:`before_optimizer_step` itself after backward; otherwise the recorder checks and clips
        from the optimizer's pre-step hook. ``external_micro_batch_hook``: the integration calls
        :meth:`start_micro_batch` right before each training micro-batch's computation (Lightning's
        ``training_step``, which need not call the module's forward) instead of the forward pre-hook.
        """
        import torch

        if self.plan is not None:
            raise PlanError("attach() was already called on this recorder")
        if self.model_spec is None:
            raise PlanError("a model spec is needed so a verifier can rebuild the initial model "
                            "(task= or model_spec='package.module:callable')")
        reference = self.initial_model()
        if model is None:
            model = reference
        else:
            ref_sd, got_sd = reference.state_dict(), model.state_dict()
            same = ref_sd.keys() == got_sd.keys() and all(
                torch.equal(ref_sd[k].cpu(), got_sd[k].detach().cpu()) for k in ref_sd)
            if not same:
                raise PlanError("the model's initial weights are not the ones the run seed produces; pass model=None "
                                "or build it with rec.initial_model()")
        if self.device is not None:
            if isinstance(optimizer, torch.optim.Optimizer):
                raise PlanError("with device=, pass the optimizer as a callable (params -> Optimizer) so it is "
                                "built after the model moves")
            model = model.to(self.device)  # before the optimizer and the environment fingerprint
        if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = optimizer(model.parameters())
        names = param_names(model, optimizer)
        opt_spec = optimizers.describe(optimizer, {id(p): n for n, p in model.named_parameters()})
        dataset, batch_size = self._check_loader(data_loader)
        device = next(model.parameters()).device
        step = self._build_step_spec(dataset, device.type)
        self._schedule = BatchSchedule(self._run_seed, len(dataset), batch_size * step["accumulation"])
        num_steps = self.steps if self.steps is not None else self.epochs * self._schedule.steps_per_epoch  # type: ignore[operator]
        lr_spec = self.lr_schedule or {"kind": "constant", "lr": float(optimizer.param_groups[0]["lr"])}
        try:
            schedule.validate(lr_spec, num_steps)
        except PlanError as exc:
            raise PlanError(f"lr_schedule: {exc}") from None
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        self.plan = Plan(
            seed=self.seed, nonce=self._nonce,
            model={"spec": self.model_spec, "kwargs": self.model_kwargs},
            data={"spec": self.data_spec, "kwargs": self.data_kwargs, "num_samples": len(dataset),
                  "merkle_root": self._data_root.hex(), "sample_digest": SAMPLE_DIGEST,
                  "fields": sample_fields(dataset)},
            optimizer=opt_spec,
            lr_schedule=lr_spec,
            step=step,
            batch_size=batch_size,
            every=self.every,
            num_steps=num_steps,
            step_digests=self.step_digests,
            environment=environment_fingerprint(str(device), dtype),
            signer=self._signer,
            created_at=utc_now(),
            extra={"codec": self.codec, "compact_anchor_every": self.compact_anchor_every},
        )
        self._proof, self._writer = open_writer(
            self.path, self.plan, self._signing_key, codec=self.codec, keyframe_every=self.keyframe_every,
            anchor_every=self.compact_anchor_every, overwrite=self.overwrite)
        self._model, self._optimizer, self._names, self._dataset = model, optimizer, names, dataset
        self._hasher = StepHasher(model, optimizer, names)
        self._snapshots: list[Any] = []   # per-step snapshots not yet handed to the writer thread
        self._snapshot_bytes = 0
        self._set_lr(schedule.lr_at(lr_spec, 0))
        model.train()
        initial = capture(model, optimizer, 0, names, self._last_lr or 0.0)
        self._writer.submit(0, 0, initial, np.empty((0, self.plan.samples_per_step), np.int64))
        from pol.guard import StepGuard

        self._guard = StepGuard(model, optimizer, step["clip"], self.plan.accumulation, step["autocast"],
                                watch_steps=self.every)
        self._external_lr = framework_lr_scheduler
        if not external_micro_batch_hook:
            model.register_forward_pre_hook(self._before_forward)
        if not external_step_hooks:
            optimizer.register_step_pre_hook(self._before_optimizer_step)
        optimizer.register_step_post_hook(self._after_step)
        if self.self_check:
            from pol.selfcheck import SelfCheck

            self._self_checker = SelfCheck(self.plan, dataset, initial, str(device), self.model_spec)
        return model, optimizer, RecordedLoader(self, data_loader)

    @property
    def _signer(self) -> str:
        return bytes(self._signing_key.verify_key).hex()

    @property
    def _nonce(self) -> str:
        if not hasattr(self, "_nonce_value"):
            self._nonce_value = new_nonce()
        return self._nonce_value

    @property
    def _run_seed(self) -> int:
        from pol.plan import derive_run_seed

        return derive_run_seed(self.seed, self._signer, self._nonce)

    def initial_model(self) -> Any:
        """The model this run must start from: built from the model spec under the run seed."""
        if self.model_spec is None:
            raise PlanError("no model spec: pass task= or model_spec=")
        return seeded_model(self.model_spec, self.model_kwargs, self._run_seed)

    def _check_loader(self, loader: Any) -> tuple[Any, int]:
        from torch.utils.data import default_collate

        batch_size = getattr(loader, "batch_size", None)
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise PlanError("the data loader must have a fixed batch_size (no custom batch_sampler)")
        if getattr(loader, "collate_fn", default_collate) is not default_collate:
            raise PlanError("the data loader uses a custom collate_fn, which a verifier cannot reproduce; move the "
                            "transformation into the Dataset (samples of tensors, tuples or dicts)")
        dataset = loader.dataset
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise PlanError("the data set must be map-style (len and indexing); iterable data sets are not recorded")
        self._data_root = data_root(dataset)
        if self.data_spec is not None:
            committed = load_data(self.data_spec, self.data_kwargs).train
            if len(committed) != len(dataset) or data_root(committed) != self._data_root:
                raise PlanError(f"the loader's data set is not the data {self.data_spec!r} gives (with "
                                f"data_kwargs {self.data_kwargs}); a verifier would load the latter")
        return dataset, batch_size

    def _build_step_spec(self, dataset: Any, device_type: str) -> dict[str, Any]:
        o = self._step_options
        fields = sample_fields(dataset)
        dict_samples = len(dataset) > 0 and isinstance(dataset[0], Mapping)
        inputs = o["inputs"]
        if inputs is None:
            inputs = [f for f in fields if f != o["target"]] if dict_samples else [0]
        target = o["target"]
        spec = {"loss": o["loss"], "batch": {"inputs": list(inputs), "target": target}, "output": o["output"],
                "clip": o["clip"], "autocast": _autocast_spec(o["autocast"], device_type),
                "accumulation": o["accumulation"]}
        valid = step_spec.validate(spec)
        if dict_samples:
            missing = [k for k in [*valid["batch"]["inputs"], target] if k is not None and k not in fields]
            if missing:
                raise PlanError(f"the samples have no field(s) {missing}; they have {fields}")
        return valid

    # -- per step ---------------------------------------------------------------------------
    def _set_lr(self, lr: float) -> None:
        assert self.plan is not None
        optimizers.set_lr(self._optimizer, self.plan.optimizer, lr)
        self._last_lr = lr
        self._expected_lrs = [g["lr"] for g in self._optimizer.param_groups]

    def _before_forward(self, module: Any, args: Any) -> None:
        """Each training forward pass starts a micro-batch: its per-micro-batch seed (and, for a
        step's first micro-batch, the committed learning rate). Evaluation passes are left alone."""
        import torch

        if not module.training or not torch.is_grad_enabled():
            return
        assert self.plan is not None
        acc = self.plan.accumulation
        t, m = divmod(self._micro, acc)
        if t >= self.plan.num_steps:
            raise PlanError(f"the plan commits to {self.plan.num_steps} steps; the loop asked for more")
        if t != self.step:
            raise PlanError(f"micro-batch {self._micro} belongs to step {t} but {self.step} optimizer step(s) were "
                            f"taken: the plan commits {acc} forward pass(es) in training mode per step")
        if m == 0:
            if [g["lr"] for g in self._optimizer.param_groups] != self._expected_lrs and not self._external_lr:
                raise PlanError("the learning rate was changed outside the committed schedule (an LR scheduler?); "
                                "pass lr_schedule= to the Recorder instead")
            self._set_lr(schedule.lr_at(self.plan.lr_schedule, t))
        self._guard.on_forward(module, self.step)
        seed_micro_batch(self.plan.run_seed, t, m)
        self._micro += 1

    def start_micro_batch(self, module: Any) -> None:
        """A training micro-batch starts (for integrations that attached with ``external_micro_batch_hook``):
        its seed, and for a step's first micro-batch the committed learning rate."""
        self._before_forward(module, ())

    def _before_micro_batch(self) -> None:
        """Called as the recorded loader hands a micro-batch to the loop (accounting only)."""
        self._yielded += 1

    def _before_optimizer_step(self, optimizer: Any = None, args: Any = (), kwargs: Any = None) -> None:
        assert self.plan is not None
        closure = args[1] if len(args) > 1 else (kwargs or {}).get("closure")  # args[0] is the optimizer itself
        if closure is not None:  # (Accelerate's wrapper passes closure=None positionally)
            raise PlanError("optimizer.step(closure) runs forward and backward inside the step; the recorder cannot "
                            "check and clip there: use a framework integration (pol.integrations) for such loops")
        self.before_optimizer_step()

    def before_optimizer_step(self) -> None:
        """After the last backward of a step, before ``optimizer.step()``: verify what the loop did and
        clip as committed. Called by the optimizer's pre-step hook, or by an integration that set
        ``external_step_hooks``."""
        assert self.plan is not None
        expected = (self.step + 1) * self.plan.accumulation
        if self._micro != expected:
            raise PlanError(f"optimizer step {self.step} ran after {self._micro} training forward pass(es); the plan "
                            f"commits to {self.plan.accumulation} per step (accumulation={self.plan.accumulation})")
        self._guard.check_before_step(self.step)

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        assert self.plan is not None and self._writer is not None
        self.step += 1
        lr = self._last_lr or 0.0
        if self.step % self.every == 0 or self.step == self.plan.num_steps:
            index = -(-self.step // self.every)
            block = self._schedule.block(self._last_checkpoint_step, self.step)
            state = capture(self._model, optimizer, self.step, self._names, lr)
            self._flush_snapshots()
            self._writer.submit(index, self.step, state, block)
            self._last_checkpoint_step = self.step
            if self._self_checker is not None:
                self._self_checker.observe(self.step, state_digest(state), state)
        else:
            checking = self._self_checker is not None and self._self_checker.wants(self.step)
            if self.plan.step_digests or checking:
                snapshot = self._hasher.snapshot(self.step, lr)
                if self.plan.step_digests:
                    self._snapshots.append(snapshot)
                    self._snapshot_bytes += int(snapshot[0].numel() + snapshot[1].numel())
                    if len(self._snapshots) >= 64 or self._snapshot_bytes >= 32 << 20:
                        self._flush_snapshots()
                if checking:
                    self._self_checker.observe(self.step, digest_of_snapshot(*snapshot))
        if self._self_checker is not None and self._self_checker.done:
            self._self_checker = None

    def _flush_snapshots(self) -> None:
        assert self._writer is not None
        self._writer.submit_snapshots(self._snapshots)
        self._snapshots, self._snapshot_bytes = [], 0

    def batch_indices(self, step: int) -> np.ndarray:
        return self._schedule.indices(step)

    def micro_batch_indices(self, n: int) -> np.ndarray:
        """Indices of the n-th micro-batch handed to the loop."""
        assert self.plan is not None
        t, m = divmod(n, self.plan.accumulation)
        return self._schedule.indices(t)[m * self.plan.batch_size:(m + 1) * self.plan.batch_size]

    # -- end --------------------------------------------------------------------------------
    def close(self) -> None:
        """Wait for the writer, sign (plan digest, chain head, final weights digest), close."""
        if self._closed or self._writer is None or self._proof is None or self.plan is None:
            self._closed = True
            return
        self._closed = True
        try:
            if self.step < self.plan.num_steps:
                warnings.warn(f"recorded {self.step} of {self.plan.num_steps} planned steps; "
                              "the proof will not verify", stacklevel=2)
            finish(self._proof, self._writer, self.plan, self._signing_key, self.step)
        finally:
            self._proof.close()

    def publish(self, model: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Write ``model``'s final weights as safetensors naming this proof (see :mod:`pol.publish`).

        Finishes the proof first if every planned step was taken; the weights must be the
        signed final weights.
        """
        from pol.publish import publish_model

        if not self._closed:
            if self.plan is None or self.step < self.plan.num_steps:
                raise PlanError("publish() needs a finished recording: take every planned step first")
            self.close()
        return publish_model(model, path, self.path)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # leave the file as flushed so far: readable, without a final signature
            if self._writer is not None:
                try:
                    self._writer.shutdown()
                except Exception:
                    pass
            if self._proof is not None:
                self._proof.close()
            self._closed = True


class RecordedLoader:
    """Iterates the committed micro-batch schedule, one epoch per ``iter()``; seeds every micro-batch."""

    def __init__(self, recorder: Recorder, original: Any):
        from torch.utils.data import DataLoader

        self._rec = recorder
        self._epoch = 0
        self.dataset = original.dataset
        self.batch_size = original.batch_size
        self._loader = DataLoader(
            original.dataset, batch_sampler=_ScheduleSampler(self), num_workers=original.num_workers,
            pin_memory=original.pin_memory, worker_init_fn=original.worker_init_fn,
        )

    def _epoch_range(self) -> range:
        """Micro-batch numbers of the current epoch."""
        plan = self._rec.plan
        assert plan is not None
        spe = self._rec._schedule.steps_per_epoch * plan.accumulation
        start = self._epoch * spe
        return range(start, min(start + spe, plan.num_steps * plan.accumulation))

    def __len__(self) -> int:
        return len(self._epoch_range())

    def __iter__(self) -> Iterator[Any]:
        steps = self._epoch_range()
        if steps and steps.start != self._rec._yielded:
            raise PlanError("a new epoch was started before the previous one finished (or a batch was skipped)")
        self._sampled = steps
        try:
            for batch in self._loader:
                self._rec._before_micro_batch()
                yield batch
        finally:
            self._epoch += 1


class _ScheduleSampler:
    def __init__(self, loader: RecordedLoader):
        self._loader = loader

    def __iter__(self) -> Iterator[list[int]]:
        for n in self._loader._sampled:
            yield self._loader._rec.micro_batch_indices(n).tolist()

    def __len__(self) -> int:
        return len(self._loader._sampled)
