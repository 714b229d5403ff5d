"""Record a proof while a Lightning ``Trainer`` trains a ``LightningModule``.

::

    import lightning as L
    import pol
    from pol.integrations.lightning import ProofCallback

    with pol.Recorder("run.pol.h5", key="keys/trainer.key", every=10, seed=0, steps=200,
                      model_spec="my_pkg:build_module", data_spec="my_pkg:train_data") as rec:
        proof = ProofCallback(rec)
        module = rec.initial_model()                 # the LightningModule, built from the run seed
        trainer = L.Trainer(max_steps=200, gradient_clip_val=1.0, precision="bf16-mixed",
                            accumulate_grad_batches=2, accelerator="cpu", devices=1, callbacks=[proof])
        trainer.fit(module, train_dataloaders=proof.dataloader(DataLoader(data, batch_size=16)))

    # pol verify run.pol.h5 --key keys/trainer.pub --model my_pkg:build_module --data my_pkg:train_data

The committed step is the module's own ``training_step(batch, batch_idx)`` (loss
``training_step`` in :mod:`pol.step`); replay calls it outside a Trainer, so it must compute its
loss from the batch and ``batch_idx`` alone (``self.log`` is fine; ``self.trainer``,
``self.global_step`` are not). Before step 0 the callback reads the trainer's settings, commits
clipping (``gradient_clip_val``/``gradient_clip_algorithm``, then applied by the recorder, not
Lightning), ``precision="bf16-mixed"`` (autocast) and ``accumulate_grad_batches``, and refuses
with one line what it cannot record (see :func:`check_trainer`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.model_helpers import is_overridden

from pol.errors import PlanError
from pol.recorder import Recorder, RecordedLoader

__all__ = ["ProofCallback", "check_trainer"]

# LightningModule hooks that change the step the recorder commits (Lightning's default is replayed).
_STEP_HOOKS = ("optimizer_step", "optimizer_zero_grad", "configure_gradient_clipping", "backward",
               "transfer_batch_to_device", "on_before_batch_transfer", "on_after_batch_transfer",
               "lr_scheduler_step")
_PRECISIONS = {"32-true": None, "32": None, "bf16-mixed": "bfloat16"}


def check_trainer(trainer: Any, module: Any, recorder: Recorder) -> dict[str, Any]:
    """The recorder options a trainer's settings commit; a :class:`PlanError` (one line) for settings
    the recorder cannot record."""
    if not module.automatic_optimization:
        raise PlanError("manual optimization is not recorded: use Lightning's automatic optimization "
                        "(training_step returns the loss)")
    if trainer.world_size != 1 or trainer.num_devices != 1 or type(trainer.strategy).__name__ != "SingleDeviceStrategy":
        raise PlanError(f"the trainer runs {type(trainer.strategy).__name__} on {trainer.num_devices} device(s) x "
                        f"{trainer.num_nodes} node(s); only single-device training is recorded yet "
                        "(docs/INTEGRATIONS.md, Multi-rank)")
    precision = str(trainer.precision)
    if precision not in _PRECISIONS:
        if precision == "16-mixed":
            raise PlanError("precision='16-mixed' needs a GradScaler, whose skipped steps and scale are not recorded: "
                            "use precision='bf16-mixed' or '32-true'")
        raise PlanError(f"precision={precision!r} is not recorded (weights must stay float32): use 'bf16-mixed' "
                        "or '32-true'")
    for hook in _STEP_HOOKS:
        if is_overridden(hook, module):
            raise PlanError(f"{type(module).__name__}.{hook} is overridden; the recorder replays Lightning's default "
                            f"{hook} (remove the override or record a plain loop)")
    if any(type(cb).__name__ == "GradientAccumulationScheduler" for cb in trainer.callbacks):
        raise PlanError("a GradientAccumulationScheduler changes accumulation during training; use a fixed "
                        "accumulate_grad_batches")
    limit = trainer.limit_train_batches  # (an int is a batch count: 1 means one batch)
    if not (limit is None or isinstance(limit, float) and limit == 1.0) or trainer.overfit_batches:
        raise PlanError("limit_train_batches / overfit_batches change which batches train; the recorder commits every "
                        "batch of its schedule (leave them at their defaults)")
    if recorder.steps is not None and trainer.max_steps != recorder.steps:
        raise PlanError(f"Trainer(max_steps={trainer.max_steps}) but the Recorder commits steps={recorder.steps}: "
                        "give both the same number")
    if recorder.epochs is not None and (trainer.max_steps not in (-1, None) or trainer.max_epochs != recorder.epochs):
        raise PlanError(f"Trainer(max_epochs={trainer.max_epochs}, max_steps={trainer.max_steps}) but the Recorder "
                        f"commits epochs={recorder.epochs}: give Trainer(max_epochs={recorder.epochs}) and no max_steps")
    clip = None
    if trainer.gradient_clip_val:
        algorithm = str(getattr(trainer.gradient_clip_algorithm, "value", trainer.gradient_clip_algorithm) or "norm")
        value = float(trainer.gradient_clip_val)
        clip = ({"kind": "value", "clip_value": value} if algorithm == "value"
                else {"kind": "norm", "max_norm": value, "norm_type": 2.0})
    return {"loss": "training_step", "inputs": [], "target": None, "output": None, "clip": clip,
            "autocast": _PRECISIONS[precision], "accumulation": int(trainer.accumulate_grad_batches)}


class _RecordedBatches:
    """What the Trainer iterates: the recorder's loader, once the plan is signed (at ``on_fit_start``)."""

    def __init__(self, original: Any):
        self.original = original
        self.recorded: RecordedLoader | None = None

    def _loader(self) -> RecordedLoader:
        if self.recorded is None:
            raise PlanError("this data loader is recorded by a ProofCallback: pass the callback to the Trainer too")
        return self.recorded

    def __iter__(self) -> Iterator[Any]:
        return iter(self._loader())

    def __len__(self) -> int:
        return len(self._loader())


class ProofCallback(pl.Callback):
    """Records ``trainer.fit`` into ``recorder``'s proof (the recorder signs when its ``with`` block ends)."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self._batches: _RecordedBatches | None = None
        self._restore: list[tuple[Any, str, Any]] = []
        self._micro = 0
        self._per_epoch = 0

    def dataloader(self, loader: Any) -> _RecordedBatches:
        """The loader to give ``trainer.fit(train_dataloaders=...)``: the recorder owns its batch order."""
        if self._batches is not None:
            raise PlanError("dataloader() was already called on this callback")
        self._batches = _RecordedBatches(loader)
        return self._batches

    # -- before step 0 ----------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        options = check_trainer(trainer, pl_module, self.recorder)
        self.recorder.configure(**options)
        # the recorder clips (right before the update, as committed): Lightning must not clip again
        self._set(trainer, "gradient_clip_val", None)
        if options["autocast"] is not None:
            # replay runs torch.autocast with its defaults; Lightning's disables the weight cache, which
            # changes the gradients of weights used twice in one forward pass
            import torch

            device = trainer.strategy.root_device.type
            self._set(trainer.precision_plugin, "autocast_context_manager",
                      lambda: torch.autocast(device, dtype=torch.bfloat16))

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if len(trainer.optimizers) != 1:
            raise PlanError(f"configure_optimizers returns {len(trainer.optimizers)} optimizers; one is recorded")
        if trainer.lr_scheduler_configs:
            raise PlanError("configure_optimizers returns an LR scheduler; the recorder owns the learning rate: return "
                            "only the optimizer and pass lr_schedule= (a pol.schedule spec) to the Recorder")
        if trainer.global_step != 0:
            raise PlanError("resuming from a checkpoint is not recorded: a proof starts at the seeded initial model")
        if self._batches is None:
            raise PlanError("pass train_dataloaders=callback.dataloader(loader) to trainer.fit: the recorder owns the "
                            "batch order")
        _, _, recorded = self.recorder.attach(model=pl_module, optimizer=trainer.optimizers[0],
                                              data_loader=self._batches.original, external_step_hooks=True,
                                              external_micro_batch_hook=True)
        self._batches.recorded = recorded
        plan = self.recorder.plan
        assert plan is not None
        self._per_epoch = int(plan.data["num_samples"]) // plan.samples_per_step * plan.accumulation
        self._set(pl_module, "training_step", self._wrap(pl_module, pl_module.training_step))

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.train_dataloader is not self._batches:
            raise PlanError("the trainer does not iterate the recorded loader: pass "
                            "train_dataloaders=callback.dataloader(loader) to trainer.fit (not a DataModule)")

    def _wrap(self, module: Any, training_step: Any) -> Any:
        def recorded_training_step(batch: Any, batch_idx: int, *args: Any, **kwargs: Any) -> Any:
            expected = self._micro % self._per_epoch
            if batch_idx != expected:
                raise PlanError(f"Lightning passed batch_idx={batch_idx} where the recorded schedule is at micro-batch "
                                f"{expected} of its epoch")
            self._micro += 1
            self.recorder.start_micro_batch(module)
            return training_step(batch, batch_idx, *args, **kwargs)

        return recorded_training_step

    # -- every step -------------------------------------------------------------------------
    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.recorder.before_optimizer_step()  # checks the step, clips as committed

    # -- end --------------------------------------------------------------------------------
    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        for obj, name, old in reversed(self._restore):
            if old is _INSTANCE_ABSENT:
                obj.__dict__.pop(name, None)
            else:
                setattr(obj, name, old)
        self._restore = []

    def _set(self, obj: Any, name: str, value: Any) -> None:
        self._restore.append((obj, name, obj.__dict__.get(name, _INSTANCE_ABSENT)))
        setattr(obj, name, value)


_INSTANCE_ABSENT = object()
