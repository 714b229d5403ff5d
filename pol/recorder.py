"""The Recorder: wraps an ordinary PyTorch training loop and records a signed proof.

Example::

    with pol.Recorder("run.pol.h5", key="keys/trainer.key", every=10, seed=0,
                      model_spec="digits-mlp", data_spec="digits-mlp", epochs=1) as rec:
        model, optimizer, loader = rec.attach(model=None, optimizer=make_opt, data_loader=loader)
        for x, y in loader:
            optimizer.zero_grad(); loss_fn(model(x), y).backward(); optimizer.step()

The recorder owns what a verifier must reproduce: it rebuilds the loader around its seeded
batch schedule, builds (or checks) the initial model from the seed, sets the committed
learning rate and reseeds torch before every step, and checkpoints every ``every`` steps from
an optimizer step hook. The plan is signed before the first step; the chain head at the end.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pol import schedule
from pol.assemble import FINAL_DOMAIN, PLAN_DOMAIN, finish, open_writer
from pol.datacommit import SAMPLE_DIGEST, data_root
from pol.envinfo import environment_fingerprint
from pol.errors import PlanError
from pol.hashing import derive_seed
from pol.keys import load_signing_key
from pol.plan import Plan, utc_now
from pol.proof_file import ProofWriter
from pol.sampler import BatchSchedule
from pol.state import capture, param_names
from pol.tasks import get_task, seeded_model
from pol.training import OPTIMIZERS
from pol.writer import BackgroundChainWriter

__all__ = ["Recorder", "RecordedLoader", "PLAN_DOMAIN", "FINAL_DOMAIN"]


def _jsonable_hparams(defaults: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in defaults.items():
        if k == "lr":
            continue
        if isinstance(v, tuple):
            v = list(v)
        if v is None or isinstance(v, (bool, int, float, str)) or (
            isinstance(v, list) and all(isinstance(e, (int, float)) for e in v)
        ):
            out[k] = v
        else:
            raise PlanError(f"optimizer setting {k}={v!r} cannot be committed to the plan")
    return out


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
        loss: str = "cross_entropy",
        codec: str = "delta-zstd",
        keyframe_every: int = 50,
        compact_anchor_every: int | None = None,
        overwrite: bool = False,
        device: str | None = None,
    ):
        if every <= 0:
            raise PlanError(f"every (k) must be a positive number of steps, got {every}")
        if (epochs is None) == (steps is None):
            raise PlanError("give exactly one of epochs= or steps=")
        self.path = Path(path)
        self._signing_key = load_signing_key(key)
        self.every, self.seed = every, seed
        self.model_spec = model_spec or task
        self.data_spec = data_spec or task
        self.model_kwargs, self.data_kwargs = dict(model_kwargs or {}), dict(data_kwargs or {})
        if task is not None:
            get_task(task)
        self.epochs, self.steps = epochs, steps
        self.lr_schedule = schedule.validate(lr_schedule) if lr_schedule else None
        self.loss = loss
        self.codec, self.keyframe_every = codec, keyframe_every
        self.compact_anchor_every = compact_anchor_every
        self.overwrite = overwrite
        self.device = device
        self.plan: Plan | None = None
        self._writer: BackgroundChainWriter | None = None
        self._proof: ProofWriter | None = None
        self._closed = False
        self.step = 0            # optimizer steps taken
        self._yielded = 0        # batches handed to the loop
        self._last_lr: float | None = None
        self._last_checkpoint_step = 0

    # -- set-up -----------------------------------------------------------------------------
    def attach(self, *, model: Any = None, optimizer: Any, data_loader: Any) -> tuple[Any, Any, "RecordedLoader"]:
        """Wrap the user's model, optimizer and loader; commits and signs the plan.

        ``model=None`` builds the model from ``model_spec`` and the seed. A model passed in
        must equal that build bitwise (a verifier recomputes it). With ``device="cuda"`` the
        recorder moves the model there before building the optimizer, so the plan records the
        device actually trained on; move each batch to the same device in your loop. ``optimizer`` may be a
        ``torch.optim.Optimizer`` over ``model.parameters()`` or a callable
        ``params -> Optimizer`` (needed when ``model=None``).
        """
        import torch

        if self.plan is not None:
            raise PlanError("attach() was already called on this recorder")
        if self.model_spec is None:
            raise PlanError("a model spec is needed so a verifier can rebuild the initial model "
                            "(task= or model_spec='package.module:callable')")
        reference = seeded_model(self.model_spec, self.model_kwargs, self.seed)
        if model is None:
            model = reference
        else:
            ref_sd, got_sd = reference.state_dict(), model.state_dict()
            same = ref_sd.keys() == got_sd.keys() and all(
                torch.equal(ref_sd[k].cpu(), got_sd[k].detach().cpu()) for k in ref_sd)
            if not same:
                raise PlanError("the model's initial weights are not the ones the seed produces; pass model=None "
                                "or build it with pol.tasks.seeded_model(spec, kwargs, seed)")
        if self.device is not None:
            if isinstance(optimizer, torch.optim.Optimizer):
                raise PlanError("with device=, pass the optimizer as a callable (params -> Optimizer) so it is "
                                "built after the model moves")
            model = model.to(self.device)  # before the optimizer and the environment fingerprint
        if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = optimizer(model.parameters())
        if type(optimizer).__name__ not in OPTIMIZERS or type(optimizer).__module__.split(".")[0] != "torch":
            raise PlanError(f"optimizer {type(optimizer).__name__} is not supported; use one of {', '.join(OPTIMIZERS)}")
        names = param_names(model, optimizer)
        batch_size = data_loader.batch_size
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise PlanError("the data loader must have a fixed batch_size (no custom batch_sampler)")
        dataset = data_loader.dataset
        num_samples = len(dataset)
        self._schedule = BatchSchedule(self.seed, num_samples, batch_size)
        num_steps = self.steps if self.steps is not None else self.epochs * self._schedule.steps_per_epoch  # type: ignore[operator]
        lr_spec = self.lr_schedule or {"kind": "constant", "lr": float(optimizer.param_groups[0]["lr"])}
        device = next(model.parameters()).device
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        self.plan = Plan(
            seed=self.seed,
            model={"spec": self.model_spec, "kwargs": self.model_kwargs},
            data={"spec": self.data_spec, "kwargs": self.data_kwargs, "num_samples": num_samples,
                  "merkle_root": data_root(dataset).hex(), "sample_digest": SAMPLE_DIGEST},
            optimizer={"type": type(optimizer).__name__, "hparams": _jsonable_hparams(dict(optimizer.defaults))},
            lr_schedule=lr_spec,
            loss=self.loss,
            batch_size=batch_size,
            every=self.every,
            num_steps=num_steps,
            environment=environment_fingerprint(str(device), dtype),
            signer=bytes(self._signing_key.verify_key).hex(),
            created_at=utc_now(),
            extra={"codec": self.codec, "compact_anchor_every": self.compact_anchor_every},
        )
        self._proof, self._writer = open_writer(
            self.path, self.plan, self._signing_key, codec=self.codec, keyframe_every=self.keyframe_every,
            anchor_every=self.compact_anchor_every, overwrite=self.overwrite)
        self._model, self._optimizer, self._names = model, optimizer, names
        self._set_lr(schedule.lr_at(lr_spec, 0))
        model.train()
        self._writer.submit(0, 0, capture(model, optimizer, 0, names), np.empty((0, batch_size), np.int64))
        optimizer.register_step_post_hook(self._after_step)
        loader = RecordedLoader(self, data_loader)
        return model, optimizer, loader

    # -- per step ---------------------------------------------------------------------------
    def _set_lr(self, lr: float) -> None:
        for group in self._optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = lr

    def _before_step(self) -> None:
        """Called as each batch is handed to the loop: committed LR and per-step seed."""
        import torch

        assert self.plan is not None
        t = self._yielded
        if t >= self.plan.num_steps:
            raise PlanError(f"the plan commits to {self.plan.num_steps} steps; the loop asked for more")
        if self._optimizer.param_groups[0]["lr"] != self._last_lr:
            raise PlanError("the learning rate was changed outside the committed schedule (an LR scheduler?); "
                            "pass lr_schedule= to the Recorder instead")
        self._set_lr(schedule.lr_at(self.plan.lr_schedule, t))
        torch.manual_seed(derive_seed(self.seed, "step", t))
        self._yielded += 1

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        assert self.plan is not None and self._writer is not None
        if self._yielded != self.step + 1:
            raise PlanError(f"optimizer step {self.step} ran after {self._yielded} batches; the recorder expects "
                            "exactly one optimizer step per batch (no gradient accumulation in format v2)")
        self.step += 1
        if self.step % self.every == 0 or self.step == self.plan.num_steps:
            index = -(-self.step // self.every)
            block = self._schedule.block(self._last_checkpoint_step, self.step)
            self._writer.submit(index, self.step, capture(self._model, optimizer, self.step, self._names), block)
            self._last_checkpoint_step = self.step

    def batch_indices(self, step: int) -> np.ndarray:
        return self._schedule.indices(step)

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
    """Iterates the committed batch schedule, one epoch per ``iter()``; seeds every step."""

    def __init__(self, recorder: Recorder, original: Any):
        from torch.utils.data import DataLoader

        self._rec = recorder
        self._epoch = 0
        self.dataset = original.dataset
        self.batch_size = original.batch_size
        self._loader = DataLoader(
            original.dataset, batch_sampler=_ScheduleSampler(self), num_workers=original.num_workers,
            collate_fn=original.collate_fn, pin_memory=original.pin_memory,
            worker_init_fn=original.worker_init_fn,
        )

    def _epoch_range(self) -> range:
        plan = self._rec.plan
        assert plan is not None
        spe = self._rec._schedule.steps_per_epoch
        start = self._epoch * spe
        return range(start, min(start + spe, plan.num_steps))

    def __len__(self) -> int:
        return len(self._epoch_range())

    def __iter__(self) -> Iterator[Any]:
        steps = self._epoch_range()
        if steps and steps.start != self._rec._yielded:
            raise PlanError("a new epoch was started before the previous one finished")
        self._sampled = steps
        try:
            for batch in self._loader:
                self._rec._before_step()
                yield batch
        finally:
            self._epoch += 1


class _ScheduleSampler:
    def __init__(self, loader: RecordedLoader):
        self._loader = loader

    def __iter__(self) -> Iterator[list[int]]:
        for t in self._loader._sampled:
            yield self._loader._rec.batch_indices(t).tolist()

    def __len__(self) -> int:
        return len(self._loader._sampled)
