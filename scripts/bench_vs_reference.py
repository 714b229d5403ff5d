#!/usr/bin/env python
"""Our recorder and format against the published PoL code's way of doing the same, in one run.

    python scripts/bench_vs_reference.py --json            # 100 steps at k=10, 3 rounds, 4 segments
    python scripts/bench_vs_reference.py --json --quick    # 30 steps at k=10, 2 rounds, 3 segments

``synthetic-resnet20`` (ResNet-20, batch 128, SGD momentum), CPU, one torch thread (``--threads``).
Three loops see the same initial model and the same batches, interleaved per round:

* ``plain``: no recording.
* ``ours``: :class:`pol.Recorder` (HDF5, delta-zstd, hash chain, signatures), timed from the first
  batch to the end of ``close()``.
* ``reference``: ``torch.save({'net': model.state_dict(), 'optimizer': optimizer.state_dict()},
  f"model_step_{step}")`` every k steps, ``np.save('indices.npy', ...)`` at the end.

Verification replays the same segments both ways: ours with :func:`verifier.api.verify`
(``replay_seconds`` from its report: decoding, replay, comparison; plus the whole call, which
also checks signatures, the chain and the data commitment); the reference way loads both
checkpoints with ``torch.load(weights_only=True)``, rebuilds the segment's batches through a
new ``DataLoader`` and replays k steps, then compares the weights.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
from scripts.bench_record import (  # noqa: E402
    BATCH,
    SEED,
    TASK,
    _data,
    _optimizer_factory,
    run_plain,
    run_recorded,
)

NAME = "bench_vs_reference"


def run_reference(dataset: Any, steps: int, every: int, out: Path) -> float:
    """The published PoL code's recording: a pickle per checkpoint, the indices at the end."""
    import torch
    from torch.nn import functional as F

    from pol.sampler import BatchSchedule
    from pol.tasks import seeded_model

    out.mkdir(exist_ok=True)
    schedule = BatchSchedule(SEED, len(dataset), BATCH)
    batches = [schedule.indices(t).tolist() for t in range(steps)]
    model = seeded_model(TASK, {}, SEED)
    opt = _optimizer_factory()(model.parameters())
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches)
    model.train()
    torch.save({"net": model.state_dict(), "optimizer": opt.state_dict()}, out / "model_step_0")
    t0 = time.perf_counter()
    sequence = []
    step = 0
    for i, (x, y) in enumerate(loader):
        sequence.append(batches[i])
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        step += 1
        if step % every == 0 or step == steps:
            torch.save({"net": model.state_dict(), "optimizer": opt.state_dict()}, out / f"model_step_{step}")
    np.save(out / "indices.npy", np.asarray(sequence, dtype=np.int64))
    return time.perf_counter() - t0


def verify_reference(dataset: Any, out: Path, segments: list[int], every: int) -> dict[str, Any]:
    """Per segment: torch.load both checkpoints, rebuild the batches with a DataLoader, replay, compare."""
    import torch
    from torch.nn import functional as F

    from pol.hashing import derive_seed
    from pol.tasks import build_model

    t0 = time.perf_counter()
    indices = np.load(out / "indices.npy")
    model = build_model(TASK)
    opt = _optimizer_factory()(model.parameters())
    distances = []
    for j in segments:
        start, stop = j * every, min((j + 1) * every, len(indices))
        ckpt = torch.load(out / f"model_step_{start}", weights_only=True)
        model.load_state_dict(ckpt["net"])
        opt.load_state_dict(ckpt["optimizer"])
        model.train()
        subset = torch.utils.data.Subset(dataset, indices[start:stop].reshape(-1).tolist())
        loader = torch.utils.data.DataLoader(subset, batch_size=BATCH, shuffle=False)
        for t, (x, y) in enumerate(loader, start):
            torch.manual_seed(derive_seed(SEED, "step", t))
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        recorded = torch.load(out / f"model_step_{stop}", weights_only=True)["net"]
        diff = sum(float((model.state_dict()[k].double() - v.double()).norm() ** 2)
                   for k, v in recorded.items() if v.is_floating_point())
        distances.append(diff ** 0.5)
    return {"seconds": time.perf_counter() - t0, "max_distance": max(distances), "segments": segments}


def verify_ours(proof: Path, pub: Path, count: int) -> dict[str, Any]:
    from verifier.api import VerifyOptions, verify

    t0 = time.perf_counter()
    report = verify(proof, public_key=str(pub),
                    options=VerifyOptions(segments=count, seed=0, workers=1, progress_check=False))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "replay_s": report.info.get("replay_seconds"), "verdict": report.verdict,
            "segments": report.info.get("replayed_segments"), "figure": report.check("replay").figure}


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__)
    p.add_argument("--steps", type=int, help="steps per run (default 100; quick 30)")
    p.add_argument("--every", type=int, default=10, help="k (default 10)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 2)")
    p.add_argument("--segments", type=int, help="segments verified (default 4; quick 3)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    steps = args.steps or (30 if args.quick else 100)
    rounds = args.rounds or (2 if args.quick else 3)
    count = args.segments or (3 if args.quick else 4)
    every = args.every
    started = time.perf_counter()
    with workdir("bench-vs-ref-") as d:
        key, pub = key_paths(d)
        dataset = _data(steps)
        run_plain(_data(2), 2)  # warm-up
        times: dict[str, list[float]] = {"plain": [], "ours": [], "reference": []}
        for i, which in enumerate(interleaved_order(["plain", "ours", "reference"], rounds)):
            if which == "plain":
                t = run_plain(dataset, steps)
            elif which == "ours":
                t = run_recorded(dataset, steps, every, d / "run.pol.h5", key)
            else:
                t = run_reference(dataset, steps, every, d / "reference")
            times[which].append(t)
            log(NAME, f"round {i // 3 + 1} {which:9s} {t:7.2f} s ({t / steps:.3f} s/step, load {load_now()})")
        ours_bytes = (d / "run.pol.h5").stat().st_size
        ref_files = sorted((d / "reference").iterdir())
        ref_bytes = sum(f.stat().st_size for f in ref_files)
        ours_v = verify_ours(d / "run.pol.h5", pub, count)
        log(NAME, f"ours: verify {ours_v['wall_s']:.2f} s (replay {ours_v['replay_s']} s), {ours_v['verdict']}")
        ref_v = verify_reference(dataset, d / "reference", ours_v["segments"], every)
        log(NAME, f"reference: verify {ref_v['seconds']:.2f} s, max distance {ref_v['max_distance']:.3g}")
    ours_oh = median_paired_ratio(times["ours"], times["plain"])
    ref_oh = median_paired_ratio(times["reference"], times["plain"])
    ours_replay = ours_v["replay_s"] if ours_v["replay_s"] is not None else ours_v["wall_s"]
    result: dict[str, Any] = {
        "benchmark": NAME, "quick": args.quick, "task": TASK, "device": "cpu", "threads": args.threads, "steps": steps, "every": every,
        "rounds": rounds, "machine": machine_info(),
        "recording_overhead": {"ours": ours_oh, "reference": ref_oh},
        "bytes": {"ours": ours_bytes, "reference": ref_bytes, "ours_vs_reference": ours_bytes / ref_bytes,
                  "reference_files": len(ref_files)},
        "verify_seconds": {"ours_replay": ours_replay, "ours_whole_call": ours_v["wall_s"],
                           "reference": ref_v["seconds"], "ours_replay_vs_reference": ours_replay / ref_v["seconds"],
                           "segments": ours_v["segments"], "steps_replayed": len(ours_v["segments"]) * every},
        "ours_verdict": ours_v["verdict"], "ours_replay_figure": ours_v["figure"],
        "reference_max_distance": ref_v["max_distance"],
        "times_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "plain_step_s": statistics.median(times["plain"]) / steps,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    rows = [
        ["recording time / plain training", f"{ours_oh:.4f}x", f"{ref_oh:.4f}x", f"{ours_oh / ref_oh:.3f}"],
        ["bytes on disk", f"{ours_bytes / 1e6:.2f} MB", f"{ref_bytes / 1e6:.2f} MB", f"{ours_bytes / ref_bytes:.3f}"],
        [f"verify {len(ours_v['segments'])} segments (replay)", f"{ours_replay:.2f} s", f"{ref_v['seconds']:.2f} s",
         f"{ours_replay / ref_v['seconds']:.3f}"],
        ["  whole verify() call", f"{ours_v['wall_s']:.2f} s", "", ""],
    ]
    emit(result, as_json=args.json,
         table=format_table(rows, ["figure", "ours", "reference-style", "ours / reference"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
