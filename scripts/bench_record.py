#!/usr/bin/env python
"""Recording overhead: the same training loop with and without a :class:`pol.Recorder`.

    python scripts/bench_record.py --json                      # ResNet-20; 5 pairs; 200 steps at k=100, 100 at k=10
    python scripts/bench_record.py --json --quick              # 3 pairs; 40 steps at k=100, 20 at k=10
    python scripts/bench_record.py --json --task digits-mlp    # the MLP (a ~0.2 ms step: the worst case for hooks)

The recorder commits the state after every step (format 3, ``step_digests``); ``overhead_*`` is
with them, ``overhead_*_checkpoints_only`` without (``Recorder(step_digests=False)``). The
recorder's self-check (it replays its first segment once, ``k`` steps) is switched off in the timed
pairs and timed on its own (``self_check_s``): it is a one-off cost, ``k / num_steps`` of a run.

Task ``synthetic-resnet20``: ResNet-20, batch 128, SGD (lr 0.1, momentum 0.9, weight decay
5e-4), CPU, one torch thread (as the reference figures) unless ``--threads``. A run always
ends with a checkpoint, so a 40-step run at k=100 (quick mode) writes one checkpoint per 40
steps, 2.5 times the k=100 rate: the quick k=100 figure is an upper bound. For each k, recorded and
unrecorded runs alternate (``r u u r r u ...``); both start from the same seeded initial model
and see the same batches in the same order through a ``DataLoader``. Only the training loop is
timed: for the recorded run from the first batch to the end of ``Recorder.close()`` (which
waits for the background writer and signs), so checkpoints still being written count. Set-up
(data commitment, plan signing, the step-0 checkpoint written by ``attach``) is not timed; the
data commitment is timed on its own (``data_commit_s``, 25,600 CIFAR-shaped samples).

Each run is exactly one epoch (``num_samples = steps * 128``), so the recorder's per-epoch
batch-order computation is charged in the same proportion as in a real run.

Figures: ``overhead_k100`` / ``overhead_k10`` = median over pairs of recorded / unrecorded
loop time (1.00 = no overhead; goals 1.01 and 1.03). ``breakdown`` times the recorder's
pieces in isolation, to show where the overhead goes.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts._bench_common import (  # noqa: E402
    bench_parser,
    emit,
    format_table,
    goal,
    interleaved_order,
    key_paths,
    load_now,
    log,
    machine_info,
    median_paired_ratio,
    paired_ratios,
    timed,
    workdir,
)

NAME = "bench_record"
TASK = "synthetic-resnet20"
BATCH = 128
SEED = 0
_DIGITS = {"task": "digits-mlp", "batch": 32}


def _optimizer_factory() -> Any:
    from pol.tasks import get_task
    from pol.training import optimizer_class

    spec = get_task(TASK)
    return lambda params: optimizer_class(spec.optimizer)(params, lr=spec.lr, **spec.hparams)


def _data(steps: int) -> Any:
    from pol.tasks import load_data, synthetic_cifar

    if TASK == "digits-mlp":
        return load_data(TASK).train
    return synthetic_cifar(num_samples=steps * BATCH).train


def _data_kwargs(dataset: Any) -> dict[str, Any]:
    return {} if TASK == "digits-mlp" else {"num_samples": len(dataset)}


def run_plain(dataset: Any, steps: int) -> float:
    """The user's loop without recording: same init, same batches, same DataLoader path."""
    import torch
    from torch.nn import functional as F

    from pol.sampler import BatchSchedule
    from pol.tasks import seeded_model

    schedule = BatchSchedule(SEED, len(dataset), BATCH)  # the same order machinery, any seed
    batches = [schedule.indices(t).tolist() for t in range(steps)]
    model = seeded_model(TASK, {}, SEED)
    opt = _optimizer_factory()(model.parameters())
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches)
    model.train()
    t0 = time.perf_counter()
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def run_recorded(dataset: Any, steps: int, every: int, path: Path, key: Path, step_digests: bool = True,
                 self_check: bool = False) -> float:
    import torch
    from torch.nn import functional as F

    import pol
    from pol.sampler import epoch_permutation

    rec = pol.Recorder(path, key=key, every=every, seed=SEED, task=TASK, steps=steps,
                       data_kwargs=_data_kwargs(dataset), overwrite=True, step_digests=step_digests,
                       self_check=self_check)
    model, opt, loader = rec.attach(model=None, optimizer=_optimizer_factory(),
                                    data_loader=torch.utils.data.DataLoader(dataset, batch_size=BATCH))
    assert rec._writer is not None
    rec._writer.drain()             # the step-0 checkpoint is set-up: written once per run, by attach()
    epoch_permutation.cache_clear()  # the recorder computes the batch order itself, as in a fresh process
    t0 = time.perf_counter()
    while rec.step < steps:
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    rec.close()
    return time.perf_counter() - t0


def paired_overhead(steps: int, every: int, pairs: int, d: Path, step_digests: bool = True) -> dict[str, Any]:
    key, _ = key_paths(d)
    dataset = _data(steps)
    times: dict[str, list[float]] = {"recorded": [], "plain": []}
    for i, which in enumerate(interleaved_order(["recorded", "plain"], pairs)):
        if which == "recorded":
            t = run_recorded(dataset, steps, every, d / "run.pol.h5", key, step_digests)
        else:
            t = run_plain(dataset, steps)
        times[which].append(t)
        log(NAME, f"k={every} run {i + 1}/{2 * pairs} {which:8s} {t:7.2f} s ({t / steps:.3f} s/step, load {load_now()})")
    ratios = paired_ratios(times["recorded"], times["plain"])
    size = (d / "run.pol.h5").stat().st_size
    return {
        "overhead": median_paired_ratio(times["recorded"], times["plain"]),
        "ratios": [round(r, 4) for r in ratios],
        "steps": steps, "every": every, "pairs": pairs, "num_samples": steps * BATCH,
        "checkpoints_per_run": -(-steps // every),
        "steps_per_checkpoint": steps / -(-steps // every),
        "plain_s": [round(t, 3) for t in times["plain"]],
        "recorded_s": [round(t, 3) for t in times["recorded"]],
        "plain_step_s": statistics.median(times["plain"]) / steps,
        "recorded_step_s": statistics.median(times["recorded"]) / steps,
        "proof_bytes": size,
    }


def time_data_commit(reps: int) -> dict[str, Any]:
    from pol.datacommit import data_root
    from pol.tasks import synthetic_cifar

    dataset = synthetic_cifar(num_samples=25_600, heldout=0).train
    times = [timed(data_root, dataset)[0] for _ in range(reps)]
    return {"data_commit_s": statistics.median(times), "data_commit_runs_s": [round(t, 3) for t in times],
            "data_commit_samples": 25_600, "data_commit_bytes": int(dataset.tensors[0].numel() * 4)}


def breakdown(d: Path, step_s: float) -> dict[str, Any]:
    """The recorder's pieces, timed alone on a real ResNet-20 state (milliseconds)."""
    import torch
    from torch.nn import functional as F

    from pol import schedule
    from pol.hashing import derive_seed, state_digest
    from pol.plan import Plan
    from pol.proof_file import ProofWriter
    from pol.state import capture, param_names
    from pol.tasks import seeded_model

    model = seeded_model(TASK, {}, SEED)
    opt = _optimizer_factory()(model.parameters())
    names = param_names(model, opt)
    x, y = (t[:BATCH] for t in _data(2).tensors)
    states = []
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        states.append(capture(model, opt, 1, names))
    n = 2000
    lr_spec = {"kind": "constant", "lr": 0.1}
    t0 = time.perf_counter()
    for t in range(n):
        schedule.lr_at(lr_spec, t)
        torch.manual_seed(derive_seed(SEED, "step", t, 0))
    per_step_ms = (time.perf_counter() - t0) / n * 1e3
    reps = 20
    capture_ms = min(timed(capture, model, opt, 1, names)[0] for _ in range(reps)) * 1e3
    digest_ms = min(timed(state_digest, states[-1])[0] for _ in range(reps)) * 1e3
    from pol.stepdigest import StepHasher, digest_of_snapshot

    hasher = StepHasher(model, opt, names)
    snapshot_ms = min(timed(hasher.snapshot, 1, 0.1)[0] for _ in range(reps)) * 1e3
    snap = hasher.snapshot(1, 0.1)
    step_digest_ms = min(timed(digest_of_snapshot, *snap)[0] for _ in range(reps)) * 1e3
    from pol.step import default_spec

    plan = Plan(seed=0, nonce="00" * 16, model={}, data={}, optimizer={}, lr_schedule=lr_spec, step=default_spec(),
                batch_size=BATCH, every=10, num_steps=10, step_digests=False, environment={}, signer="00" * 32,
                created_at="")
    enc: dict[str, float] = {}
    for codec in ("delta-zstd", "raw"):
        w = ProofWriter(d / f"bd-{codec}.h5", plan=plan, plan_signature=b"\0" * 64,
                        public_key=b"\0" * 32, codec=codec, overwrite=True)
        w.store_checkpoint(0, 0, states[0])  # keyframe; the next ones are deltas
        times = []
        for i in range(1, reps):
            t = time.perf_counter()
            w.store_checkpoint(i, i, states[1 + i % 2])
            w.flush()
            times.append(time.perf_counter() - t)
        w.close()
        enc[codec] = min(times) * 1e3
    writer_ms = digest_ms + enc["delta-zstd"]
    return {
        "per_step_hooks_ms": per_step_ms,
        "capture_ms": capture_ms,
        "state_digest_ms": digest_ms,
        "store_checkpoint_delta_zstd_ms": enc["delta-zstd"],
        "store_checkpoint_raw_ms": enc["raw"],
        "state_bytes": sum(int(a.nbytes) for a in states[-1].values()),
        "step_snapshot_ms": snapshot_ms,
        "step_digest_ms": step_digest_ms,
        "predicted_overhead_k100": 1 + (per_step_ms + snapshot_ms + step_digest_ms
                                        + (capture_ms + writer_ms) / 100) / (step_s * 1e3),
        "predicted_overhead_k10": 1 + (per_step_ms + snapshot_ms + step_digest_ms
                                       + (capture_ms + writer_ms) / 10) / (step_s * 1e3),
        "note": "prediction charges the whole writer job to the training thread (2 cores, torch on both)",
    }


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__)
    p.add_argument("--pairs", type=int, help="paired runs per k (default 5; quick 3)")
    p.add_argument("--steps-k100", type=int, help="steps per run at k=100 (default 200; quick 40)")
    p.add_argument("--steps-k10", type=int, help="steps per run at k=10 (default 100; quick 20)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--task", choices=["synthetic-resnet20", "digits-mlp"], default="synthetic-resnet20")
    args = p.parse_args(argv)

    import torch

    global TASK, BATCH
    if args.task == "digits-mlp":
        TASK, BATCH = _DIGITS["task"], _DIGITS["batch"]
    torch.set_num_threads(args.threads)
    pairs = args.pairs or (3 if args.quick else 5)
    steps100 = args.steps_k100 or (40 if args.quick else 200)
    steps10 = args.steps_k10 or (20 if args.quick else 100)
    started = time.perf_counter()
    result: dict[str, Any] = {"benchmark": NAME, "quick": args.quick, "task": TASK, "batch_size": BATCH,
                              "device": "cpu", "machine": machine_info()}
    with workdir("bench-record-") as d:
        run_plain(_data(2), 2)  # warm-up: first-call allocations, thread pool start
        k100 = paired_overhead(steps100, 100, pairs, d)
        k100_ckpt = paired_overhead(steps100, 100, pairs, d, step_digests=False)
        k10 = paired_overhead(steps10, 10, pairs, d)
        key, _ = key_paths(d)
        self_check = run_recorded(_data(steps10), 10, 10, d / "sc.pol.h5", key, self_check=True) - \
            run_recorded(_data(steps10), 10, 10, d / "sc.pol.h5", key, self_check=False)
        dc = time_data_commit(3)
        log(NAME, f"data commitment of 25,600 samples: {dc['data_commit_s']:.3f} s")
        bd = breakdown(d, k100["plain_step_s"])
    result.update({
        "task": TASK, "batch_size": BATCH,
        "overhead_k100": k100["overhead"], "overhead_k10": k10["overhead"],
        "overhead_k100_checkpoints_only": k100_ckpt["overhead"],
        "self_check_s": round(self_check, 3), "self_check_steps": 10,
        "data_commit_s": dc["data_commit_s"],
        "step_s": k100["plain_step_s"],
        "goals": {"overhead_k100<=1.01": goal(k100["overhead"], 1.01), "overhead_k10<=1.03": goal(k10["overhead"], 1.03),
                  "data_commit_s<=1": goal(dc["data_commit_s"], 1.0)},
        "k100": k100, "k100_checkpoints_only": k100_ckpt, "k10": k10, "data_commit": dc, "breakdown": bd,
        "loadavg_1m_at_end": load_now(),
        "elapsed_s": round(time.perf_counter() - started, 1),
    })
    rows = [
        ["recording overhead, k=100", f"{k100['overhead']:.4f}x", "<= 1.01x", result["goals"]["overhead_k100<=1.01"],
         f"{k100['steps']} steps, {pairs} pairs, {k100['plain_step_s']:.3f} s/step"],
        ["recording overhead, k=10", f"{k10['overhead']:.4f}x", "<= 1.03x", result["goals"]["overhead_k10<=1.03"],
         f"{k10['steps']} steps, {pairs} pairs, {k10['plain_step_s']:.3f} s/step"],
        ["overhead k=100, checkpoints only", f"{k100_ckpt['overhead']:.4f}x", "(informational)", "",
         "Recorder(step_digests=False)"],
        ["self-check (one-off)", f"{self_check:.3f} s", "(informational)", "", "replays the first 10 steps once"],
        ["data commitment, 25,600 samples", f"{dc['data_commit_s']:.3f} s", "<= 1 s", result["goals"]["data_commit_s<=1"],
         "median of 3"],
    ]
    table = format_table(rows, ["figure", "measured", "goal", "", "context"])
    table += "\n\nbreakdown (ms): " + ", ".join(f"{k}={v:.3f}" for k, v in bd.items() if isinstance(v, float))
    emit(result, as_json=args.json, table=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
