"""Measure reproduction noise across CPU thread counts, to calibrate tolerance-mode thresholds.

Records honest runs with ``--record-threads`` threads, replays every segment with
``--replay-threads`` threads (so bitwise replay is not expected), and prints the distribution
of the relative distance ||replayed - recorded|| / ||replayed - start|| and of the progress
ratio. The default ``max_distance`` in verifier/tolerance.py must sit far above the honest
maximum and far below what forgeries produce (scripts/bench_security.py).

    python scripts/calibrate_tolerance.py [--quick] [--json]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts._bench_common import bench_parser, emit, format_table  # noqa: E402


def measure(task: str, steps: int, every: int, seeds: list[int], record_threads: int, replay_threads: int,
            data_kwargs: dict) -> dict:
    from helpers_train import train_recorded

    from pol.keys import generate_keypair
    from verifier.api import VerifyOptions, verify

    distances, progress = [], []
    with tempfile.TemporaryDirectory() as tmp:
        sk, pk = generate_keypair(Path(tmp) / "k")
        for seed in seeds:
            proof = Path(tmp) / f"{task}-{seed}.pol.h5"
            torch.set_num_threads(record_threads)
            train_recorded(proof, sk, task=task, steps=steps, every=every, seed=seed, data_kwargs=data_kwargs)
            report = verify(proof, public_key=str(pk), options=VerifyOptions(
                segments=10**9, seed=0, mode="tolerance", threads=replay_threads, progress_check=False))
            detail = report.info.get("segment_figures", [])
            distances += [d["distance"] for d in detail]
            progress += [d["progress"] for d in detail]
    d = np.asarray(distances)
    return {"task": task, "segments": int(d.size), "distance_max": float(d.max()), "distance_median": float(np.median(d)),
            "distance_p99": float(np.quantile(d, 0.99)), "progress_min": float(np.min(progress)),
            "progress_max": float(np.max(progress))}


def main() -> None:
    ap = bench_parser(__doc__, "2 seeds and 20 ResNet-20 steps")
    ap.add_argument("--record-threads", type=int, default=2)
    ap.add_argument("--replay-threads", type=int, default=1)
    args = ap.parse_args()
    seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    runs = [("digits-mlp", 200, 10, {}), ("digits-cnn", 200, 10, {})]
    runs.append(("synthetic-resnet20", 20 if args.quick else 60, 10, {"num_samples": 1024, "heldout": 128}))
    rows = [measure(t, s, k, seeds if t != "synthetic-resnet20" else seeds[:2], args.record_threads,
                    args.replay_threads, kw) for t, s, k, kw in runs]
    table = format_table([[r["task"], r["segments"], r["distance_median"], r["distance_p99"], r["distance_max"],
                           f"{r['progress_min']:.4f}..{r['progress_max']:.4f}"] for r in rows],
                         ["task", "segments", "dist median", "dist p99", "dist max", "progress min..max"])
    emit({"record_threads": args.record_threads, "replay_threads": args.replay_threads, "rows": rows},
         as_json=args.json, table=table)


if __name__ == "__main__":
    main()
