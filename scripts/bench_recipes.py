#!/usr/bin/env python
"""The recipe matrix: every training recipe the recorder accepts records a proof that verifies;
every recipe it cannot record is refused before the proof goes on.

    python scripts/bench_recipes.py --json             # 60 steps at k=10, 3 pairs per recipe
    python scripts/bench_recipes.py --json --quick     # 20 steps at k=5, 2 pairs per recipe (a few minutes)
    python scripts/bench_recipes.py --only AdamW,lightning-bf16-clip-acc2

Accepted recipes (each optimizer, clipping by norm and value, bf16 autocast, gradient
accumulation, parameter groups, every schedule kind, label smoothing, a custom loss, dict and
tuple batches, a dict output, a small transformer, and the Lightning / Hugging Face Trainer /
Accelerate integrations) are recorded around the user's loop, then verified with every segment
replayed (``segments`` = number of checkpoints). Per row:

- ``verified``: the verdict is "verified"; ``bitwise``: in exact mode (every replayed segment
  equal bit for bit; this machine, the recording stack);
- ``overhead``: median over pairs of (recorded loop time / the same loop without a recorder),
  runs alternated ``r u u r ...``; the loop is timed from the first batch to the end of
  ``Recorder.close()`` (background writes and the final signature included); set-up (data
  commitment, plan signature, step-0 checkpoint: ``setup_s``) is timed apart. For the
  framework rows the whole ``fit()``/``train()`` call is timed on both sides (the framework's
  own set-up included; the recorder's attach happens inside it); ``added_ms_per_step``: (median
  recorded - median plain time) / steps;
- ``self_check_s``: what the recorder's own replay of the first segment (k steps, once) costs,
  and ``self_check_share`` = that time / the recorded loop time.

Short runs make fixed costs (writer start, checkpoints of a small model, the self-check of k
steps, signing) a large share: the overhead figures here describe these small recipes, not a
long run (see scripts/bench_record.py for a long ResNet-20 run).

Refused recipes (fp16 autocast, LBFGS, a custom collate_fn, clipping in the loop without
committing it, an uncommitted autocast, an LR scheduler stepped by the loop, optimizer.step with
a closure, an iterable data set, the integrations' fp16 / LR-scheduler settings, and label
smoothing the plan does not say) report the error's first line and ``steps_done``: the optimizer
steps completed when the recorder stopped the run (0 = refused before the first update; the
uncommitted-label-smoothing row is caught by the self-check at the first checkpoint, k steps in,
before anything is signed).

The models and data are the test suite's (``tests/helpers``), named ``module:callable`` as a
user names their own.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from scripts._bench_common import (  # noqa: E402
    bench_parser,
    emit,
    format_table,
    interleaved_order,
    key_paths,
    load_now,
    log,
    machine_info,
    median_paired_ratio,
    workdir,
)

NAME = "bench_recipes"
SEED = 3


# -- the loop bodies a user writes (one micro-batch each) ------------------------------------
def _xy(model: Any, batch: Any, **kw: Any) -> Any:
    from torch.nn import functional as F

    x, y = batch
    return F.cross_entropy(model(x), y, **kw)


def _dict_output(model: Any, batch: Any) -> Any:
    from torch.nn import functional as F

    x, y = batch
    return F.cross_entropy(model(x)["logits"], y)


def _model_loss(model: Any, batch: Any) -> Any:
    return model(**batch)["loss"]


def _tokens(model: Any, batch: Any) -> Any:
    from torch.nn import functional as F

    tokens, mask, y = batch
    return F.cross_entropy(model(tokens, mask), y)


def _focal(model: Any, batch: Any) -> Any:
    from recipes import focal_loss

    x, y = batch
    return focal_loss(model(x), y)


def _opt(name: str, **kw: Any) -> Callable[[Any], Any]:
    def build(params: Any) -> Any:
        import torch

        return getattr(torch.optim, name)(params, **kw)

    return build


@dataclass
class Recipe:
    name: str
    family: str
    loss: Callable[..., Any] = _xy
    optimizer: Callable[[Any], Any] = field(default_factory=lambda: _opt("SGD", lr=0.05, momentum=0.9))
    model: str = "digits-mlp"
    data: str = "digits-mlp"
    batch_size: int = 32
    recorder: dict[str, Any] = field(default_factory=dict)   # Recorder options (clip, autocast, accumulation, ...)
    groups: bool = False
    loss_kwargs: dict[str, Any] = field(default_factory=dict)  # what the loop's loss call passes
    runner: Callable[..., float] | None = None                  # framework rows: run(recipe, path, key, steps, every, recorded)
    refused: Callable[..., None] | None = None                 # refused rows: run and expect a PlanError

    def verify_options(self) -> dict[str, Any]:
        user = {"model": self.model if ":" in self.model else None, "data": self.data if ":" in self.data else None}
        loss = self.recorder.get("loss")
        if isinstance(loss, str) and ":" in loss:
            user["loss"] = loss
        return {k: v for k, v in user.items() if v}


def _group_optimizer(params_or_model: Any) -> Any:
    import torch

    named = list(params_or_model.named_parameters())
    return torch.optim.AdamW([{"params": [p for n, p in named if n.endswith("weight")], "weight_decay": 0.01},
                              {"params": [p for n, p in named if not n.endswith("weight")], "weight_decay": 0.0,
                               "lr": 2e-3}], lr=1e-3)


# -- the hand-written loop, with and without a recorder ------------------------------------
def _loop(recipe: Recipe, model: Any, opt: Any, loader: Any, steps: int, recorded: bool) -> None:
    import torch

    from pol.step import clip_gradients

    acc = int(recipe.recorder.get("accumulation", 1))
    autocast = recipe.recorder.get("autocast")
    clip = recipe.recorder.get("clip")
    clip_spec = {"kind": "norm", "max_norm": float(clip), "norm_type": 2.0} if isinstance(clip, (int, float)) else clip
    done, micro = 0, 0
    while done < steps:
        for batch in loader:
            if autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = recipe.loss(model, batch, **recipe.loss_kwargs)
            else:
                loss = recipe.loss(model, batch, **recipe.loss_kwargs)
            (loss / acc if acc > 1 else loss).backward()
            micro += 1
            if micro % acc == 0:
                if not recorded:
                    clip_gradients(model, clip_spec)  # the recorder clips itself, right before the update
                opt.step()
                opt.zero_grad()
                done += 1
                if done == steps:
                    break


def run_loop(recipe: Recipe, path: Path, key: Path, steps: int, every: int, recorded: bool) -> tuple[float, float]:
    """(loop seconds, set-up seconds) of one run."""
    import torch

    import pol
    from pol.tasks import seeded_model

    data = pol.load_data(recipe.data).train
    if not recorded:
        model = seeded_model(recipe.model, {}, SEED)
        opt = _group_optimizer(model) if recipe.groups else recipe.optimizer(model.parameters())
        loader = torch.utils.data.DataLoader(data, batch_size=recipe.batch_size, shuffle=True)
        model.train()
        t0 = time.perf_counter()
        _loop(recipe, model, opt, loader, steps, recorded=False)
        return time.perf_counter() - t0, 0.0
    t0 = time.perf_counter()
    rec = pol.Recorder(path, key=key, every=every, seed=SEED, model_spec=recipe.model, data_spec=recipe.data,
                       steps=steps, overwrite=True, **recipe.recorder)
    if recipe.groups:
        model = rec.initial_model()
        model, opt, loader = rec.attach(model=model, optimizer=_group_optimizer(model), data_loader=torch.utils.data.
                                        DataLoader(data, batch_size=recipe.batch_size))
    else:
        model, opt, loader = rec.attach(optimizer=recipe.optimizer,
                                        data_loader=torch.utils.data.DataLoader(data, batch_size=recipe.batch_size))
    assert rec._writer is not None
    rec._writer.drain()
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        _loop(recipe, model, opt, loader, steps, recorded=True)
    except BaseException:
        rec.__exit__(*sys.exc_info())
        raise
    rec.close()
    return time.perf_counter() - t0, setup


# -- framework rows --------------------------------------------------------------------------
def run_lightning(recipe: Recipe, path: Path, key: Path, steps: int, every: int, recorded: bool) -> tuple[float, float]:
    import lightning.pytorch as L
    import torch

    import pol
    from pol.integrations.lightning import ProofCallback
    from pol.tasks import seeded_model

    settings = dict(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                    precision="bf16-mixed", gradient_clip_val=0.5, accumulate_grad_batches=2)
    data = pol.load_data("digits-mlp").train
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=not recorded)
    t0 = time.perf_counter()
    if not recorded:
        L.Trainer(**settings).fit(seeded_model("lit_models:digits_module", {}, SEED), train_dataloaders=loader)
        return time.perf_counter() - t0, 0.0
    with pol.Recorder(path, key=key, every=every, seed=SEED, model_spec="lit_models:digits_module",
                      data_spec="digits-mlp", steps=steps, overwrite=True) as rec:
        proof = ProofCallback(rec)
        L.Trainer(callbacks=[proof], **settings).fit(rec.initial_model(), train_dataloaders=proof.dataloader(loader))
    return time.perf_counter() - t0, 0.0


def _hf_args(out: Path, steps: int, **changes: Any) -> Any:
    import transformers

    settings = dict(max_steps=steps, per_device_train_batch_size=8, learning_rate=2e-3, weight_decay=0.01,
                    warmup_steps=2, lr_scheduler_type="linear", max_grad_norm=0.5, gradient_accumulation_steps=2,
                    bf16=True, use_cpu=True, report_to="none", save_strategy="no", logging_steps=10_000,
                    disable_tqdm=True)
    settings.update(changes)
    return transformers.TrainingArguments(str(out), **settings)


def _hf_runner(model_spec: str, data_spec: str, **changes: Any) -> Callable[..., tuple[float, float]]:
    def run(recipe: Recipe, path: Path, key: Path, steps: int, every: int, recorded: bool) -> tuple[float, float]:
        import transformers

        import pol
        from pol.integrations.hf import ProofTrainer
        from pol.tasks import seeded_model

        data = pol.load_data(data_spec).train
        args = _hf_args(path.parent / "hf-out", steps, **changes)
        t0 = time.perf_counter()
        if not recorded:
            transformers.Trainer(model=seeded_model(model_spec, {}, SEED), args=args, train_dataset=data).train()
            return time.perf_counter() - t0, 0.0
        with pol.Recorder(path, key=key, every=every, seed=SEED, model_spec=model_spec, data_spec=data_spec,
                          steps=steps, overwrite=True) as rec:
            ProofTrainer(recorder=rec, model=rec.initial_model(), args=args, train_dataset=data).train()
        return time.perf_counter() - t0, 0.0

    return run


def _accelerator(**kwargs: Any) -> Any:
    import accelerate
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    return accelerate.Accelerator(cpu=True, **kwargs)


def run_accelerate(recipe: Recipe, path: Path, key: Path, steps: int, every: int, recorded: bool) -> tuple[float, float]:
    import torch
    from torch.nn import functional as F

    import pol
    from pol.integrations.accelerate import prepare
    from pol.tasks import seeded_model

    data = pol.load_data("recipes:tuple_tokens").train
    accelerator = _accelerator(mixed_precision="bf16", gradient_accumulation_steps=2)
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=not recorded)

    def loop(model: Any, opt: Any, batches: Any, done: Callable[[], bool]) -> None:
        micro = 0
        while not done(micro):
            for tokens, mask, y in batches:
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        loss = F.cross_entropy(model(tokens, mask), y)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(model.parameters(), 0.5)
                    opt.step()
                    opt.zero_grad()
                micro += 1
                if done(micro):
                    break

    t0 = time.perf_counter()
    if not recorded:
        model = seeded_model("recipes:tiny_transformer", {}, SEED)
        model, opt = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=1e-3))
        loop(model, opt, loader, lambda micro: micro >= 2 * steps)
        return time.perf_counter() - t0, 0.0
    with pol.Recorder(path, key=key, every=every, seed=SEED, model_spec="recipes:tiny_transformer",
                      data_spec="recipes:tuple_tokens", steps=steps, overwrite=True, inputs=[0, 1], target=2,
                      clip=0.5) as rec:
        model, opt, batches = prepare(rec, accelerator, model=rec.initial_model(),
                                      optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3), data_loader=loader)
        loop(model, opt, batches, lambda micro: rec.step >= steps)
    return time.perf_counter() - t0, 0.0


# -- refused rows ----------------------------------------------------------------------------
def _refused_loop(**overrides: Any) -> Callable[..., None]:
    """A hand-written loop with one thing the plan cannot say (``overrides``: recipe fields and loop quirks)."""

    def run(path: Path, key: Path, steps: int, every: int, state: dict[str, Any]) -> None:
        import torch
        from torch.nn import functional as F

        import pol

        data = overrides.get("dataset") or pol.load_data("digits-mlp").train
        loader = torch.utils.data.DataLoader(data, batch_size=32, collate_fn=overrides.get("collate_fn"))
        with pol.Recorder(path, key=key, every=every, seed=SEED, task="digits-mlp", steps=steps, overwrite=True,
                          **overrides.get("recorder", {})) as rec:
            state["rec"] = rec
            model, opt, loader = rec.attach(optimizer=overrides.get("optimizer", _opt("SGD", lr=0.1)),
                                            data_loader=loader)
            sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5) if overrides.get("scheduler") else None
            while rec.step < steps:
                for x, y in loader:
                    opt.zero_grad()

                    def loss_fn() -> Any:
                        if overrides.get("autocast"):
                            with torch.autocast("cpu", dtype=torch.bfloat16):
                                return F.cross_entropy(model(x), y)
                        return F.cross_entropy(model(x), y, **overrides.get("loss_kwargs", {}))

                    if overrides.get("closure"):
                        def closure() -> Any:
                            opt.zero_grad()
                            loss = loss_fn()
                            loss.backward()
                            return loss

                        opt.step(closure)
                    else:
                        loss_fn().backward()
                        if overrides.get("clip_in_loop"):
                            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
                        opt.step()
                    if sched is not None:
                        sched.step()

    return run


def _iterable_digits() -> Any:
    import torch

    import pol

    x, y = pol.load_data("digits-mlp").train.tensors

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self) -> Any:
            return iter(zip(x, y))

    return Stream()


def _refused_lightning(**trainer: Any) -> Callable[..., None]:
    def run(path: Path, key: Path, steps: int, every: int, state: dict[str, Any]) -> None:
        import lightning.pytorch as L
        import torch

        import pol
        from pol.integrations.lightning import ProofCallback

        spec = trainer.pop("model", "lit_models:digits_module")
        with pol.Recorder(path, key=key, every=every, seed=SEED, model_spec=spec, data_spec="digits-mlp",
                          steps=steps, overwrite=True) as rec:
            state["rec"] = rec
            proof = ProofCallback(rec)
            L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, callbacks=[proof], **trainer).fit(
                rec.initial_model(), train_dataloaders=proof.dataloader(
                    torch.utils.data.DataLoader(pol.load_data("digits-mlp").train, batch_size=16)))

    return run


def _lightning_fp16() -> list[Any]:
    from lightning.pytorch.plugins.precision import MixedPrecision

    return [MixedPrecision("16-mixed", "cpu")]


def _refused_hf(**changes: Any) -> Callable[..., None]:
    def run(path: Path, key: Path, steps: int, every: int, state: dict[str, Any]) -> None:
        import pol
        from pol.integrations.hf import ProofTrainer

        with pol.Recorder(path, key=key, every=every, seed=SEED, model_spec="hf_models:tiny_bert",
                          data_spec="recipes:dict_tokens", steps=steps, overwrite=True) as rec:
            state["rec"] = rec
            ProofTrainer(recorder=rec, model=rec.initial_model(), args=_hf_args(path.parent / "hf-out", steps, **changes),
                         train_dataset=pol.load_data("recipes:dict_tokens").train).train()

    return run


def _refused_accelerate(path: Path, key: Path, steps: int, every: int, state: dict[str, Any]) -> None:
    import torch

    import pol
    from pol.integrations.accelerate import prepare

    accelerator = _accelerator(mixed_precision="fp16")
    with pol.Recorder(path, key=key, every=every, seed=SEED, task="digits-mlp", steps=steps, overwrite=True) as rec:
        state["rec"] = rec
        prepare(rec, accelerator, model=rec.initial_model(), optimizer=_opt("SGD", lr=0.1),
                data_loader=torch.utils.data.DataLoader(pol.load_data("digits-mlp").train, batch_size=32))


def recipes(steps: int) -> list[Recipe]:
    rows = [
        Recipe("SGD", "optimizer", optimizer=_opt("SGD", lr=0.05)),
        Recipe("SGD-momentum-nesterov", "optimizer", optimizer=_opt("SGD", lr=0.05, momentum=0.9, nesterov=True,
                                                                    weight_decay=1e-4)),
        Recipe("SGD-foreach", "optimizer", optimizer=_opt("SGD", lr=0.05, momentum=0.9, foreach=True)),
        Recipe("Adam", "optimizer", optimizer=_opt("Adam", lr=1e-3)),
        Recipe("Adam-amsgrad-foreach", "optimizer", optimizer=_opt("Adam", lr=1e-3, amsgrad=True, foreach=True)),
        Recipe("Adam-fused", "optimizer", optimizer=_opt("Adam", lr=1e-3, fused=True)),
        Recipe("AdamW", "optimizer", optimizer=_opt("AdamW", lr=1e-3)),
        Recipe("RMSprop", "optimizer", optimizer=_opt("RMSprop", lr=1e-3, momentum=0.5)),
        Recipe("Adagrad", "optimizer", optimizer=_opt("Adagrad", lr=0.05)),
        Recipe("Adadelta", "optimizer", optimizer=_opt("Adadelta")),
        Recipe("Adamax", "optimizer", optimizer=_opt("Adamax", lr=1e-3)),
        Recipe("NAdam", "optimizer", optimizer=_opt("NAdam", lr=1e-3)),
        Recipe("RAdam-decoupled", "optimizer", optimizer=_opt("RAdam", lr=1e-3, decoupled_weight_decay=True,
                                                              weight_decay=0.01)),
        Recipe("clip-norm", "clipping", optimizer=_opt("SGD", lr=0.5), recorder={"clip": 0.05}),
        Recipe("clip-value", "clipping", optimizer=_opt("SGD", lr=0.5),
               recorder={"clip": {"kind": "value", "clip_value": 0.01}}),
        Recipe("bf16-autocast", "autocast", optimizer=_opt("AdamW", lr=1e-3), recorder={"autocast": "bfloat16"}),
        Recipe("accumulation-4", "accumulation", batch_size=8, recorder={"accumulation": 4}),
        Recipe("bf16-clip-accumulation", "autocast", optimizer=_opt("AdamW", lr=1e-3), batch_size=16,
               recorder={"autocast": "bfloat16", "clip": 1.0, "accumulation": 2}),
        Recipe("decay-no-decay-groups", "param groups", groups=True),
        Recipe("label-smoothing", "loss", loss_kwargs={"label_smoothing": 0.1},
               recorder={"loss_kwargs": {"label_smoothing": 0.1}}),
        Recipe("custom-loss", "loss", loss=_focal, recorder={"loss": "recipes:focal_loss"}),
        Recipe("dict-output", "batches", loss=_dict_output, model="recipes:dict_mlp", recorder={"output": "logits"}),
        Recipe("dict-batches-model-loss", "batches", loss=_model_loss, model="recipes:token_classifier",
               data="recipes:dict_tokens", optimizer=_opt("AdamW", lr=1e-2),
               recorder={"loss": "model_output", "inputs": ["input_ids", "attention_mask", "labels"], "target": None,
                         "output": "loss"}),
        Recipe("tuple-batches-transformer", "transformer", loss=_tokens, model="recipes:tiny_transformer",
               data="recipes:tuple_tokens", optimizer=_opt("AdamW", lr=1e-3), batch_size=16,
               recorder={"inputs": [0, 1], "target": 2, "clip": 1.0, "autocast": "bfloat16"}),
    ]
    for spec in ({"kind": "linear", "lr": 1e-3, "total_steps": steps, "warmup_steps": 2},
                 {"kind": "cosine", "lr": 1e-3, "total_steps": steps, "warmup_steps": 2, "min_lr": 1e-5},
                 {"kind": "polynomial", "lr": 1e-3, "total_steps": steps, "warmup_steps": 1, "power": 2.0},
                 {"kind": "one_cycle", "max_lr": 1e-2, "total_steps": steps},
                 {"kind": "exponential", "lr": 1e-3, "gamma": 0.9},
                 {"kind": "step", "lr": 1e-3, "milestones": [steps // 3, 2 * steps // 3], "gamma": 0.5},
                 {"kind": "table", "values": [1e-3 * (1 + t % 3) for t in range(steps)]}):
        rows.append(Recipe(f"schedule-{spec['kind']}", "schedule", optimizer=_opt("AdamW", lr=1e-3),
                           recorder={"lr_schedule": spec}))
    rows += [
        Recipe("lightning-bf16-clip-acc2", "integration", runner=run_lightning, model="lit_models:digits_module"),
        Recipe("hf-trainer-bert-bf16-warmup-clip-acc2", "integration", model="hf_models:tiny_bert",
               data="recipes:dict_tokens", runner=_hf_runner("hf_models:tiny_bert", "recipes:dict_tokens")),
        Recipe("hf-trainer-gpt2-cosine", "integration", model="hf_models:tiny_gpt2", data="hf_models:lm_tokens",
               runner=_hf_runner("hf_models:tiny_gpt2", "hf_models:lm_tokens", lr_scheduler_type="cosine",
                                 warmup_steps=1, bf16=False, gradient_accumulation_steps=1)),
        Recipe("accelerate-bf16-clip-acc2", "integration", model="recipes:tiny_transformer",
               data="recipes:tuple_tokens", runner=run_accelerate),
    ]
    import torch

    refused = {
        "fp16-autocast": _refused_loop(recorder={"autocast": "float16"}),
        "LBFGS": _refused_loop(optimizer=lambda p: torch.optim.LBFGS(p)),
        "custom-collate_fn": _refused_loop(collate_fn=lambda samples: torch.utils.data.default_collate(samples)),
        "clip-in-loop-not-committed": _refused_loop(clip_in_loop=True),
        "autocast-not-committed": _refused_loop(autocast=True),
        "lr-scheduler-in-loop": _refused_loop(scheduler=True),
        "optimizer-step-closure": _refused_loop(closure=True),
        "iterable-dataset": _refused_loop(dataset=_iterable_digits()),
        "label-smoothing-not-committed": _refused_loop(loss_kwargs={"label_smoothing": 0.1}),
        "lightning-16-mixed": _refused_lightning(plugins=_lightning_fp16()),
        "lightning-lr-scheduler": _refused_lightning(model="lit_models:with_scheduler"),
        "hf-trainer-fp16": _refused_hf(fp16=True, bf16=False),
        "hf-trainer-label-smoothing": _refused_hf(label_smoothing_factor=0.1),
        "accelerate-fp16": _refused_accelerate,
    }
    rows += [Recipe(f"refused:{name}", "refused", refused=fn) for name, fn in refused.items()]
    return rows


# -- measuring -------------------------------------------------------------------------------
class SelfCheckClock:
    """Adds up the time the recorder's self-check (replay of the first segment) takes, while in use."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> "SelfCheckClock":
        from pol import selfcheck

        self._original = original = selfcheck.SelfCheck._run
        clock = self

        def timed_run(check: Any, recorded_end: Any) -> None:
            t0 = time.perf_counter()
            try:
                original(check, recorded_end)
            finally:
                clock.seconds += time.perf_counter() - t0

        selfcheck.SelfCheck._run = timed_run  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        from pol import selfcheck

        selfcheck.SelfCheck._run = self._original  # type: ignore[method-assign]


def measure(recipe: Recipe, d: Path, steps: int, every: int, pairs: int, clock: SelfCheckClock) -> dict[str, Any]:
    key, pub = key_paths(d)
    path = d / f"{recipe.name.replace(':', '_')}.pol.h5"
    row: dict[str, Any] = {"recipe": recipe.name, "family": recipe.family}
    if recipe.refused is not None:
        from pol.errors import PolError

        state: dict[str, Any] = {}
        try:
            recipe.refused(path, key, steps, every, state)
            row.update(refused=False, error=None)
        except PolError as exc:
            row.update(refused=True, error=str(exc).splitlines()[0][:200], error_type=type(exc).__name__)
        rec = state.get("rec")
        row["steps_done"] = rec.step if rec is not None else 0
        row["signed"] = _signed(path)
        return row
    run = recipe.runner or run_loop
    times: dict[str, list[float]] = {"recorded": [], "plain": []}
    setups, checks = [], []
    for which in interleaved_order(["recorded", "plain"], pairs):
        before = clock.seconds
        t, setup = run(recipe, path, key, steps, every, which == "recorded")
        times[which].append(t)
        if which == "recorded":
            setups.append(setup)
            checks.append(clock.seconds - before)
    from verifier import VerifyOptions, verify

    with_ckpts = -(-steps // every)
    t0 = time.perf_counter()
    report = verify(path, public_key=str(pub), options=VerifyOptions(seed=0, segments=with_ckpts,
                                                                     **recipe.verify_options()))
    verify_s = time.perf_counter() - t0
    recorded = sorted(times["recorded"])[len(times["recorded"]) // 2]
    row.update(
        verified=report.verdict == "verified", bitwise=report.info.get("mode") == "exact",
        verdict=report.verdict, failed=[c.name for c in report.checks if c.passed is False],
        overhead=round(median_paired_ratio(times["recorded"], times["plain"]), 3),
        added_ms_per_step=round(1000 * (recorded - sorted(times["plain"])[len(times["plain"]) // 2]) / steps, 2),
        recorded_s=[round(t, 3) for t in times["recorded"]], plain_s=[round(t, 3) for t in times["plain"]],
        setup_s=round(max(setups), 3) if any(setups) else None,
        self_check_s=round(max(checks), 3),
        self_check_share=round(max(checks) / recorded, 3) if recorded else None,
        verify_s=round(verify_s, 3), segments_replayed=with_ckpts,
    )
    return row


def _signed(path: Path) -> bool:
    """Whether a file with a final signature was left (a refused run must leave none)."""
    if not path.exists():
        return False
    import pol

    try:
        with pol.ProofReader(path) as r:
            return r.final_signature is not None
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, quick_help="20 steps at k=5, 2 pairs per recipe (a few minutes on 2 cores)")
    p.add_argument("--only", help="comma-separated recipe names")
    p.add_argument("--steps", type=int, help="steps per run (default 60; quick 20)")
    p.add_argument("--every", type=int, help="k (default 10; quick 5)")
    p.add_argument("--pairs", type=int, help="recorded/plain pairs per recipe (default 3; quick 2)")
    args = p.parse_args(argv)

    import os
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import logging

    for noisy in ("lightning", "lightning.pytorch", "transformers", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    steps = args.steps or (20 if args.quick else 60)
    every = args.every or (5 if args.quick else 10)
    pairs = args.pairs or (2 if args.quick else 3)
    rows_spec = recipes(steps)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {r.name for r in rows_spec}
        if unknown:
            p.error(f"unknown recipes {sorted(unknown)}")
        rows_spec = [r for r in rows_spec if r.name in wanted]
    started = time.perf_counter()
    rows = []
    with workdir("bench-recipes-") as d, SelfCheckClock() as clock:
        for recipe in rows_spec:
            if recipe.runner is not None or recipe.refused is not None:
                missing = _missing_library(recipe)
                if missing:
                    rows.append({"recipe": recipe.name, "family": recipe.family, "skipped": f"{missing} not installed"})
                    log(NAME, f"{recipe.name}: skipped ({missing} not installed)")
                    continue
            with contextlib.redirect_stdout(sys.stderr):  # (the Trainer prints its logs on stdout)
                row = measure(recipe, d, steps, every, pairs, clock)
            rows.append(row)
            log(NAME, f"{recipe.name}: " + ", ".join(f"{k}={v}" for k, v in row.items()
                                                     if k in ("verified", "bitwise", "overhead", "added_ms_per_step",
                                                              "self_check_s",
                                                              "refused", "steps_done", "error")))
    accepted = [r for r in rows if "verified" in r]
    refused = [r for r in rows if r.get("family") == "refused" and "refused" in r]
    result = {
        "benchmark": NAME, "quick": args.quick, "steps": steps, "every": every, "pairs": pairs,
        "machine": machine_info(),
        "accepted": len(accepted), "verified": sum(r["verified"] for r in accepted),
        "false_rejections": sum(not r["verified"] for r in accepted),
        "refused_rows": len(refused), "refused": sum(r["refused"] for r in refused),
        "refused_before_first_update": sum(r["refused"] and r["steps_done"] == 0 for r in refused),
        "signed_after_refusal": sum(r["signed"] for r in refused),
        "rows": rows, "loadavg_1m_at_end": load_now(), "elapsed_s": round(time.perf_counter() - started, 1),
    }
    table_rows = []
    for r in rows:
        if "skipped" in r:
            table_rows.append([r["recipe"], r["family"], "skipped", "", "", "", "", r["skipped"]])
        elif "verified" in r:
            table_rows.append([r["recipe"], r["family"], "verified" if r["verified"] else "REJECTED",
                               "bitwise" if r["bitwise"] else "tolerance", f"{r['overhead']:.2f}x",
                               f"{r['added_ms_per_step']:.1f}", f"{r['self_check_s']:.2f} s", ""])
        else:
            table_rows.append([r["recipe"], r["family"], "refused" if r["refused"] else "NOT REFUSED",
                               f"after {r['steps_done']} step(s)", "", "", "", (r.get("error") or "")[:90]])
    table = format_table(table_rows, ["recipe", "family", "result", "replay", "overhead", "+ms/step", "self-check",
                                      "note"])
    table += (f"\n\n{result['verified']}/{result['accepted']} accepted recipes verified "
              f"({result['false_rejections']} false rejections); {result['refused']}/{result['refused_rows']} "
              f"refused, {result['refused_before_first_update']} before the first update; "
              f"{steps} steps at k={every}, {pairs} pairs")
    emit(result, as_json=args.json, table=table)
    return 0 if result["false_rejections"] == 0 and result["refused"] == result["refused_rows"] else 1


def _missing_library(recipe: Recipe) -> str | None:
    import importlib.util

    name = recipe.name
    needs = ("lightning" if "lightning" in name else "transformers" if "hf-" in name else
             "accelerate" if "accelerate" in name else None)
    if needs and importlib.util.find_spec(needs) is None:
        return needs
    return None


if __name__ == "__main__":
    sys.exit(main())
