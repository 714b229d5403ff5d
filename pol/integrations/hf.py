"""Record a proof while a Hugging Face ``Trainer`` fine-tunes a model.

::

    import pol
    from transformers import TrainingArguments
    from pol.integrations.hf import ProofTrainer

    with pol.Recorder("run.pol.h5", key="keys/trainer.key", every=10, seed=0, steps=200,
                      model_spec="my_pkg:build_model", data_spec="my_pkg:train_data") as rec:
        args = TrainingArguments("out", max_steps=200, per_device_train_batch_size=16, learning_rate=5e-5,
                                 weight_decay=0.01, warmup_steps=20, lr_scheduler_type="linear", max_grad_norm=1.0,
                                 gradient_accumulation_steps=2, bf16=True, use_cpu=True, report_to="none",
                                 save_strategy="no")
        trainer = ProofTrainer(recorder=rec, model=rec.initial_model(), args=args,
                               train_dataset=pol.load_data("my_pkg:train_data").train)
        trainer.train()

    # pol verify run.pol.h5 --key keys/trainer.pub --model my_pkg:build_model --data my_pkg:train_data

:class:`ProofTrainer` is a drop-in ``Trainer``. At ``train()`` it commits what the Trainer will
do: the optimizer it builds (AdamW with its decay / no-decay groups), its learning-rate schedule
(mapped to a :mod:`pol.schedule` spec, see :func:`schedule_spec`), ``max_grad_norm`` (the recorder
clips; the Trainer's clipping call only reads the norm it logs), ``gradient_accumulation_steps``,
``bf16`` (autocast around the model call) and the loss the model returns from the dict batch. It
gives the Trainer the recorder's loader (``torch``'s default collation of dict samples: pad in the
Dataset) and refuses with one line what it cannot record (:func:`check_arguments`).

Loss semantics: transformers >= 4.46 lets models that accept loss kwargs normalise their loss by
the token count of the whole accumulated batch (``num_items_in_batch``). :class:`ProofTrainer`
turns that off (``model_accepts_loss_kwargs = False``): each micro-batch's loss is the model's
own mean, divided by ``gradient_accumulation_steps`` -- the standard rule the plan commits.
"""

from __future__ import annotations

import contextlib
from typing import Any

import transformers
from transformers import Trainer, TrainerCallback

from pol import schedule as pol_schedule
from pol.errors import PlanError
from pol.integrations.accelerate import restore_forward, take_over_clipping
from pol.recorder import Recorder

__all__ = ["ProofTrainer", "ProofTrainerCallback", "check_arguments", "schedule_spec"]


def check_arguments(trainer: Trainer) -> None:
    """Refuse, with one line, Trainer settings the recorder cannot record (before anything trains)."""
    args = trainer.args
    if args.fp16:
        raise PlanError("fp16=True needs a GradScaler, whose skipped steps and scale are not recorded: use bf16=True")
    if args.world_size != 1 or args.n_gpu > 1:
        raise PlanError(f"the Trainer runs on {args.world_size} process(es) x {args.n_gpu} GPU(s); only single-device "
                        "training is recorded yet (docs/INTEGRATIONS.md, Multi-rank)")
    refused = {
        "deepspeed": "DeepSpeed", "fsdp": "FSDP", "torch_compile": "torch.compile (replay runs eagerly)",
        "gradient_checkpointing": "gradient checkpointing (replay does not recompute activations)",
        "neftune_noise_alpha": "NEFTune noise (added outside the committed step)",
        "group_by_length": "group_by_length (the recorder owns the batch order)",
        "auto_find_batch_size": "auto_find_batch_size (the batch size is committed)",
        "use_liger_kernel": "Liger kernels",
    }
    for name, what in refused.items():
        if getattr(args, name, None):
            raise PlanError(f"{name} is set: {what} is not recorded")
    if args.label_smoothing_factor:
        raise PlanError("label_smoothing_factor computes the loss outside the model, which the plan does not commit; "
                        "record a plain loop with Recorder(loss='cross_entropy', loss_kwargs={'label_smoothing': ...})")
    if trainer.lr_scheduler is not None:
        raise PlanError("a scheduler passed in optimizers=(optimizer, scheduler) is not recorded: the recorder commits "
                        "the TrainingArguments' schedule (lr_scheduler_type, warmup_steps, lr_scheduler_kwargs)")
    if trainer.compute_loss_func is not None:
        raise PlanError("compute_loss_func is not recorded: the committed loss is the one the model returns")
    if getattr(trainer, "loss_is_scaled_for_ga", None):
        raise PlanError("loss_is_scaled_for_ga is set: the committed step divides each micro-batch's loss by the "
                        "accumulation steps")
    for method in ("compute_loss", "training_step", "get_batch_samples", "create_optimizer", "_clip_grad_norm"):
        if getattr(type(trainer), method, None) is not getattr(ProofTrainer, method, None):
            raise PlanError(f"{type(trainer).__name__}.{method} is overridden; the recorder commits the Trainer's own")
    if trainer.data_collator is not transformers.default_data_collator:
        raise PlanError("the Trainer's data collator is not replayed: pad in the Dataset (fixed-length tensors) and "
                        "pass data_collator=default_data_collator")
    if str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)) in ("reduce_lr_on_plateau", "greedy"):
        raise PlanError(f"lr_scheduler_type={args.lr_scheduler_type} depends on evaluation metrics; the recorder "
                        "commits the schedule before step 1")


def schedule_spec(args: Any, num_steps: int, lr: float) -> dict[str, Any]:
    """The :mod:`pol.schedule` spec of the schedule the Trainer would build: the Trainer's own
    scheduler is run on a stand-in optimizer for every step; where a named kind (constant, linear,
    cosine) reproduces every value to 1e-12 relative it is used, else a table of the values."""
    import torch
    from transformers.optimization import get_scheduler

    stand_in = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    warmup = args.get_warmup_steps(num_steps)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer=stand_in, num_warmup_steps=warmup,
                              num_training_steps=num_steps, scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    values = []
    for _ in range(num_steps):
        values.append(float(stand_in.param_groups[0]["lr"]))
        stand_in.step()
        scheduler.step()
    candidates = [{"kind": "constant", "lr": lr},
                  {"kind": "linear", "lr": lr, "total_steps": num_steps, "warmup_steps": warmup}]
    if warmup == 0:  # (pol's cosine warm-up rule differs from the Hugging Face one)
        candidates.append({"kind": "cosine", "lr": lr, "total_steps": num_steps})
    for spec in candidates:
        if all(abs(pol_schedule.lr_at(spec, t) - v) <= 1e-12 * max(abs(v), lr) for t, v in enumerate(values)):
            return spec
    return {"kind": "table", "values": values}


class ProofTrainerCallback(TrainerCallback):
    """Checks at ``on_train_begin`` that the Trainer trains what the recorder committed, and removes
    Accelerate's autocast wrapper from the model's forward (the Trainer opens the committed autocast)."""

    def __init__(self, trainer: "ProofTrainer"):
        self._trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        rec = self._trainer.recorder
        if rec.plan is None:
            raise PlanError("the recorder was not attached: ProofTrainer.get_train_dataloader must build the loader")
        if state.global_step != 0:
            raise PlanError("resuming from a checkpoint is not recorded: a proof starts at the seeded initial model")
        restore_forward(self._trainer.model)


class ProofTrainer(Trainer):
    """A ``transformers.Trainer`` that records a proof into ``recorder`` (signed when its ``with`` block ends)."""

    def __init__(self, *args: Any, recorder: Recorder, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.recorder = recorder
        check_arguments(self)
        self.model_accepts_loss_kwargs = False  # the standard division by the accumulation steps (module docstring)
        self._recorded_loader: Any = None
        self.add_callback(ProofTrainerCallback(self))

    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        if resume_from_checkpoint:
            raise PlanError("resume_from_checkpoint is not recorded: a proof starts at the seeded initial model")
        if self._recorded_loader is not None:
            raise PlanError("train() runs once per recording")
        return super().train(None, *args, **kwargs)

    def _recorder_options(self) -> dict[str, Any]:
        args, rec = self.args, self.recorder
        acc = int(args.gradient_accumulation_steps)
        batch = int(args.per_device_train_batch_size)
        if rec.steps is not None:
            if args.max_steps != rec.steps:
                raise PlanError(f"TrainingArguments(max_steps={args.max_steps}) but the Recorder commits "
                                f"steps={rec.steps}: give both the same number")
            num_steps = rec.steps
        else:
            if args.max_steps > 0 or float(args.num_train_epochs) != rec.epochs:
                raise PlanError(f"TrainingArguments(num_train_epochs={args.num_train_epochs}, max_steps="
                                f"{args.max_steps}) but the Recorder commits epochs={rec.epochs}")
            num_steps = int(rec.epochs or 0) * (len(self.train_dataset) // (batch * acc))  # type: ignore[arg-type]
        lr = float(self.optimizer.param_groups[0]["lr"])  # type: ignore[union-attr]
        clip = ({"kind": "norm", "max_norm": float(args.max_grad_norm), "norm_type": 2.0}
                if args.max_grad_norm and args.max_grad_norm > 0 else None)
        autocast = {"device_type": args.device.type, "dtype": "bfloat16"} if args.bf16 else None
        return {"loss": "model_output", "target": None, "output": "loss", "clip": clip, "autocast": autocast,
                "accumulation": acc, "lr_schedule": schedule_spec(args, num_steps, lr)}

    def get_train_dataloader(self) -> Any:
        """The recorder's loader over ``train_dataset`` (built once; the plan is signed here)."""
        if self._recorded_loader is not None:
            return self._recorded_loader
        import torch
        from collections.abc import Mapping

        dataset = self.train_dataset
        if dataset is None:
            raise PlanError("training requires a train_dataset")
        first = dataset[0]
        if not isinstance(first, Mapping) or "label" in first or "label_ids" in first:
            raise PlanError("train_dataset samples must be dicts of tensors named as the model's arguments (the "
                            "target as 'labels')")
        self.create_optimizer()
        self.recorder.configure(**self._recorder_options())
        loader = torch.utils.data.DataLoader(dataset, batch_size=int(self.args.per_device_train_batch_size))
        _, _, recorded = self.recorder.attach(model=self.model, optimizer=self.optimizer, data_loader=loader,
                                              framework_lr_scheduler=True)
        assert self.recorder.plan is not None
        take_over_clipping(self.accelerator, self.model, self.recorder.plan.step["clip"])
        self._recorded_loader = recorded
        return recorded

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True) -> Any:
        """The committed autocast around the model call and the loss (replay opens the same region)."""
        import torch

        plan = self.recorder.plan
        autocast = plan.step["autocast"] if plan is not None else None
        if autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=autocast["device_type"], dtype=getattr(torch, autocast["dtype"]))
