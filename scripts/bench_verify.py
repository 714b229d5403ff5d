#!/usr/bin/env python
"""Verification speed: replay against training, and parallel replay with ``VerifyOptions(workers=2)``.

    python scripts/bench_verify.py --json            # 160 steps at k=10 (16 segments), 2 rounds
    python scripts/bench_verify.py --json --quick    # 40 steps at k=5 (8 segments), 1 round

A ``synthetic-resnet20`` proof (batch 128, SGD momentum) is recorded with ``--threads`` torch
threads (default 1) on CUDA if available, else CPU; the recorded loop is timed (first batch to
``Recorder.close()``). Then:

* ``replay_vs_train``: replay steps/s / training steps/s. Every segment is replayed with
  :class:`verifier.replay.Replayer` at the same thread count, so replay covers the same steps as
  training; only ``Replayer.run`` is timed (restore, k steps, capture). ``..._incl_decode``
  also counts decoding both checkpoints from the proof and comparing. Goal >= 0.95.
* ``workers2_speedup``: segments/s of ``verify(..., VerifyOptions(workers=2, threads=1))`` /
  the same with ``workers=1`` (every segment, no progress check). The replay part is taken
  from ``report.info["replay_seconds"]`` when the verifier reports it, else the whole call is
  timed (``timing`` says which). Goal >= 1.7 on 2 cores.
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
    timed,
    workdir,
)

NAME = "bench_verify"
TASK = "synthetic-resnet20"


def record(path: Path, key: Path, steps: int, every: int, device: str) -> float:
    import torch

    import pol
    from pol.tasks import get_task, seeded_model
    from pol.training import loss_function, optimizer_class

    spec = get_task(TASK)
    data = pol.load_data(TASK)
    loss_fn = loss_function(spec.loss)
    rec = pol.Recorder(path, key=key, every=every, seed=0, task=TASK, steps=steps, overwrite=True)
    model = seeded_model(TASK, {}, 0).to(device)
    model, opt, loader = rec.attach(
        model=model, optimizer=lambda p: optimizer_class(spec.optimizer)(p, lr=spec.lr, **spec.hparams),
        data_loader=torch.utils.data.DataLoader(data.train, batch_size=spec.batch_size))
    t0 = time.perf_counter()
    while rec.step < steps:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    rec.close()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def replay_all(path: Path, device: str) -> dict[str, Any]:
    import torch

    from pol import load_data
    from pol.proof_file import ProofReader
    from verifier.replay import Replayer
    from verifier.tolerance import Tolerance, compare_states

    with ProofReader(path) as reader:
        data = load_data(TASK)
        replayer = Replayer(reader.plan, data.train, device)
        steps = reader.checkpoint_steps
        run_s, total_s, exact = 0.0, 0.0, 0
        for j in range(reader.num_checkpoints - 1):
            t0 = time.perf_counter()
            start_state = reader.checkpoint_state(j)
            idx = reader.indices(int(steps[j]), int(steps[j + 1]))
            t1 = time.perf_counter()
            replayed = replayer.run(start_state, int(steps[j]), idx)
            if device == "cuda":
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            result = compare_states("exact", start_state, reader.checkpoint_state(j + 1), replayed,
                                    reader.state_digests[j + 1], Tolerance())
            total_s += time.perf_counter() - t0
            run_s += t2 - t1
            exact += result.passed
        return {"replay_run_s": run_s, "replay_total_s": total_s, "segments": reader.num_checkpoints - 1,
                "replay_steps": int(steps[-1]), "bitwise_equal_segments": exact}


def verify_once(path: Path, pub: Path, workers: int, segments: int) -> dict[str, Any]:
    from verifier.api import VerifyOptions, verify

    opts = VerifyOptions(workers=workers, threads=1, segments=segments, seed=0, progress_check=False)
    wall, report = timed(verify, path, public_key=str(pub), options=opts)
    replay_s = report.info.get("replay_seconds")
    seg_s = sum(f.get("seconds", 0.0) for f in report.info.get("segment_figures", []))
    return {"workers": workers, "wall_s": wall, "replay_s": replay_s, "segment_seconds_sum": seg_s,
            "verdict": report.verdict,
            "replay_figure": report.check("replay").figure, "workers_used": report.info.get("workers")}


def bench_workers(path: Path, pub: Path, segments: int, rounds: int) -> dict[str, Any]:
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for label in interleaved_order(["1", "2"], rounds):
        w = int(label)
        try:
            r = verify_once(path, pub, w, segments)
        except Exception as exc:  # workers may not be implemented yet: report it, do not hide it
            return {"error": f"verify(workers={w}) failed: {type(exc).__name__}: {exc}"}
        log(NAME, f"verify workers={w}: wall {r['wall_s']:.2f} s, replay {r['replay_s']}, {r['verdict']}, "
                  f"{r['replay_figure']} (load {load_now()})")
        runs[w].append(r)
    use_replay = all(r["replay_s"] is not None for rs in runs.values() for r in rs)
    field = "replay_s" if use_replay else "wall_s"
    t1 = statistics.median(r[field] for r in runs[1])
    t2 = statistics.median(r[field] for r in runs[2])
    s1 = statistics.median(r["segment_seconds_sum"] for r in runs[1])
    s2 = statistics.median(r["segment_seconds_sum"] for r in runs[2])
    return {
        "workers2_speedup": t1 / t2,
        # throughput once workers are running: 2 processes each at the per-segment time measured in them
        "workers2_speedup_steady_state": 2 * s1 / s2 if s2 else None,
        "workers2_startup_and_imbalance_s": t2 - s2 / 2,
        "timing": "report.info['replay_seconds']" if use_replay else "whole verify() call (no replay_seconds)",
        "workers1_s": t1, "workers2_s": t2, "segments": segments,
        "segments_per_s": {"workers1": segments / t1, "workers2": segments / t2},
        "verdicts": sorted({r["verdict"] for rs in runs.values() for r in rs}),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__)
    p.add_argument("--steps", type=int, help="recorded steps (default 160; quick 40)")
    p.add_argument("--every", type=int, help="k (default 10; quick 5)")
    p.add_argument("--rounds", type=int, help="verify rounds per worker count (default 2; quick 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for recording and replay (default 1)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = args.steps or (40 if args.quick else 160)
    every = args.every or (5 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 2)
    started = time.perf_counter()
    result: dict[str, Any] = {"benchmark": NAME, "quick": args.quick, "task": TASK, "device": device,
                              "threads": args.threads, "steps": steps, "every": every, "machine": machine_info()}
    with workdir("bench-verify-") as d:
        key, pub = key_paths(d)
        proof = d / "run.pol.h5"
        log(NAME, f"recording {steps} steps at k={every} on {device}, {args.threads} thread(s)")
        train_s = record(proof, key, steps, every, device)
        log(NAME, f"training: {train_s:.2f} s ({train_s / steps:.3f} s/step)")
        rep = replay_all(proof, device)
        log(NAME, f"replay: {rep['replay_run_s']:.2f} s in Replayer.run, {rep['replay_total_s']:.2f} s with decoding "
                  f"({rep['bitwise_equal_segments']}/{rep['segments']} bitwise equal)")
        workers = bench_workers(proof, pub, steps // every, rounds) if device == "cpu" else \
            {"error": "workers benchmark is for 2 CPU cores"}
    result.update({
        "replay_vs_train": train_s / rep["replay_run_s"],
        "replay_vs_train_incl_decode": train_s / rep["replay_total_s"],
        "workers2_speedup": workers.get("workers2_speedup"),
        "train_step_s": train_s / steps,
        "replay_step_s": rep["replay_run_s"] / rep["replay_steps"],
        "replay": rep, "workers": workers,
        "elapsed_s": round(time.perf_counter() - started, 1),
    })
    result["goals"] = {"replay_vs_train>=0.95": goal(result["replay_vs_train"], 0.95, at_most=False),
                       "workers2_speedup>=1.7": goal(result["workers2_speedup"], 1.7, at_most=False)
                       if result["workers2_speedup"] is not None else "not measured"}
    rows = [["replay / training speed", f"{result['replay_vs_train']:.3f}", ">= 0.95",
             result["goals"]["replay_vs_train>=0.95"],
             f"train {result['train_step_s']:.3f} s/step, replay {result['replay_step_s']:.3f} s/step"],
            ["  incl. checkpoint decoding", f"{result['replay_vs_train_incl_decode']:.3f}", "", "", ""],
            ["workers=2 / workers=1", f"{result['workers2_speedup']:.3f}" if result["workers2_speedup"] else "n/a",
             ">= 1.7", result["goals"]["workers2_speedup>=1.7"], workers.get("timing", workers.get("error", ""))]]
    emit(result, as_json=args.json, table=format_table(rows, ["figure", "measured", "goal", "", "context"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
