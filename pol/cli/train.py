"""``pol train``: train a built-in task with recording."""

from __future__ import annotations

import time

import click

from pol.cli._common import emit_json, progress, progress_enabled


@click.command("train")
@click.option("--task", default=None, help="Built-in task: digits-mlp, digits-cnn, synthetic-resnet20.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Proof file to write (.pol.h5).")
@click.option("--key", required=True, type=click.Path(dir_okay=False), help="Secret key from `pol keygen`.")
@click.option("--every", type=click.IntRange(min=1), default=10, show_default=True, help="k: checkpoint every k steps.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs to train (default 1 unless --steps).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Train exactly this many steps instead of epochs.")
@click.option("--seed", default=0, show_default=True, help="Run seed: init, batch order, per-step RNG.")
@click.option("--lr", type=click.FloatRange(min=0), default=None, help="Learning rate (default: the task's).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (default: the task's).")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True)
@click.option("--codec", type=click.Choice(["delta-zstd", "raw"]), default="delta-zstd", show_default=True,
              help="Checkpoint coding; raw is plain gzip HDF5 datasets.")
@click.option("--compact", "anchor_every", type=click.IntRange(min=1), default=None,
              help="Compact proof: store full checkpoints only every K checkpoints (anchors).")
@click.option("--data-kwargs", default="{}", help="JSON kwargs for the task's data builder.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads (recorded in the plan).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Train on this device (auto: CUDA when present). The plan records it.")
@click.option("--force", is_flag=True, help="Overwrite an existing proof file (or an interrupted run's partial one).")
@click.option("--resume", is_flag=True,
              help="Continue the interrupted run of --out from its last flushed checkpoint (OUT.partial); "
                   "everything else comes from its signed plan.")
@click.option("--model", "model_spec", default=None, help="With --resume: module:callable the plan's custom model needs.")
@click.option("--data", "data_spec", default=None, help="With --resume: module:callable the plan's custom data needs.")
@click.option("--loss", "loss_spec", default=None, help="With --resume: module:callable the plan's custom loss needs.")
@click.option("--json", "json_output", is_flag=True, help="Print a JSON summary on stdout.")
def train(task: str | None, out: str, key: str, every: int, epochs: int | None, steps: int | None, seed: int,
          lr: float | None, batch_size: int | None, schedule: str, codec: str, anchor_every: int | None,
          data_kwargs: str, threads: int | None, device: str, force: bool, resume: bool, model_spec: str | None,
          data_spec: str | None, loss_spec: str | None, json_output: bool) -> None:
    """Train a built-in task while recording a signed proof (or --resume an interrupted one).

    The proof is written to OUT.partial and renamed to OUT when it is signed. Ctrl-C or a kill
    leaves OUT.partial, readable up to its last checkpoint; --resume continues it.
    """
    from pol.errors import InputError, Interrupted
    from pol.partial import partial_path

    again = f"pol train --resume --out {out} --key {key}"
    try:
        if resume:
            _resume(out, key, force, model_spec, data_spec, loss_spec, json_output)
            return
        if task is None:
            raise InputError("--task is required (or --resume to continue an interrupted run)")
        _train(task, out, key, every, epochs, steps, seed, lr, batch_size, schedule, codec, anchor_every, data_kwargs,
               threads, device, force, json_output)
    except Interrupted:
        left = partial_path(out)
        raise Interrupted(f"training stopped; the partial proof is {left} (continue it with: {again})"
                          if left.exists() else "training stopped before anything was recorded") from None


def _resume(out: str, key: str, force: bool, model_spec: str | None, data_spec: str | None,
            loss_spec: str | None, json_output: bool) -> None:
    from pol.resume import resume

    started = time.perf_counter()  # the recorded device and thread count are the plan's, not the options'
    plan, start = resume(out, key, model_spec=model_spec, data_spec=data_spec, loss_spec=loss_spec, device="auto",
                         overwrite=force)
    elapsed = time.perf_counter() - started
    summary = {"proof": out, "resumed_from_step": start, "steps": plan.num_steps,
               "checkpoints": plan.num_checkpoints, "seconds": round(elapsed, 2), "plan_digest": plan.digest().hex()}
    if json_output:
        emit_json(summary)
    else:
        click.echo(f"resumed at step {start} and recorded steps {start}..{plan.num_steps} to {out} in {elapsed:.1f}s",
                   err=True)


def _train(task: str, out: str, key: str, every: int, epochs: int | None, steps: int | None, seed: int,
           lr: float | None, batch_size: int | None, schedule: str, codec: str, anchor_every: int | None,
           data_kwargs: str, threads: int | None, device: str, force: bool, json_output: bool) -> None:
    import json

    import torch

    from pol.envinfo import pick_device
    from pol.errors import InputError
    from pol.runner import train_task
    from pol.tasks import get_task, load_data

    if threads:
        torch.set_num_threads(threads)
    spec = get_task(task)
    try:
        dkw = json.loads(data_kwargs)
    except ValueError as exc:
        raise InputError(f"--data-kwargs is not JSON: {exc}") from None
    if epochs is None and steps is None:
        epochs = 1
    bs = batch_size or spec.batch_size
    total = steps if steps is not None else epochs * (len(load_data(task, dkw).train) // bs)  # type: ignore[operator]
    base_lr = lr if lr is not None else spec.lr
    lr_schedule = {"kind": "constant", "lr": base_lr}
    if schedule == "cosine":
        lr_schedule = {"kind": "cosine", "lr": base_lr, "min_lr": 0.0, "total_steps": total}
    losses: list[float] = []
    started = time.perf_counter()
    with progress("training", total, progress_enabled(json_output)) as advance:
        def on_step(loss: float) -> None:
            losses.append(loss)
            advance(1)

        plan = train_task(out, key, task=task, every=every, seed=seed, steps=steps, epochs=epochs, lr=base_lr,
                          batch_size=bs, lr_schedule=lr_schedule, data_kwargs=dkw, codec=codec,
                          anchor_every=anchor_every, overwrite=force, device=pick_device(device), on_step=on_step)
    elapsed = time.perf_counter() - started
    summary = {"proof": out, "task": task, "steps": plan.num_steps, "checkpoints": plan.num_checkpoints,
               "final_loss": losses[-1] if losses else None, "seconds": round(elapsed, 2),
               "plan_digest": plan.digest().hex()}
    if json_output:
        emit_json(summary)
    else:
        click.echo(f"recorded {plan.num_steps} steps, {plan.num_checkpoints} checkpoints to {out} "
                   f"in {elapsed:.1f}s (final loss {summary['final_loss']:.4f})", err=True)
