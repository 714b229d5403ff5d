"""Federated training with untrusted workers: replay-verified aggregation against FedAvg,
coordinate-wise median, trimmed mean and Krum, under every attack in scripts/attacks_workers.

One torch.distributed job (a coordinator and N worker processes, gloo) runs every federated
run in turn on the digits task (scikit-learn's 8x8 digits, digits-mlp): first interleaved
all-honest pairs of replay_verified and fedavg after a warm-up run (accuracy, coordinator wall
time), then each
aggregator x attack x f, with the f malicious workers being the highest ids, plus one run of
the sampled replay policy. Per run: held-out accuracy, backdoor accuracy (the trigger of
scripts/attacks_workers/common.py turning other digits into 7), malicious updates accepted /
submitted, honest updates rejected. ``--quick``: N = 4 (f = 1 = N/4), 10 rounds; full: N = 8
(f = 1 and f = 2 = N/4), 20 rounds; 10 local steps of batch 32 per round::

    python scripts/bench_workers.py --quick
    python scripts/bench_workers.py --json > workers.json
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("OMP_NUM_THREADS", "1")

from scripts._bench_common import (  # noqa: E402
    bench_parser,
    emit,
    format_table,
    interleaved_order,
    log,
    machine_info,
    median_paired_ratio,
)

NAME = "bench_workers"
AGGREGATORS = ("replay_verified", "fedavg", "median", "trimmed_mean", "krum")
SAMPLED_FRACTION = 0.5


def plan_runs(d: Path, workers: int, f_values: list[int], rounds: int, local_steps: int,
              timing_pairs: int) -> list[dict[str, Any]]:
    """Every run of the job, as (label, RunSpec kwargs, attack, f)."""
    from scripts.attacks_workers import ATTACKS

    runs: list[dict[str, Any]] = []
    base = {"rounds": rounds, "local_steps": local_steps, "seed": 0}

    def add(label: str, aggregator: str, attack: str | None, f: int, **extra: Any) -> None:
        behaviours = {str(w): attack for w in range(workers - f + 1, workers + 1)} if attack else {}
        runs.append({"label": label, "aggregator": aggregator, "attack": attack, "f": f,
                     "spec": {**base, "out": str(d / f"{len(runs):03d}.h5"), "aggregator": aggregator,
                              "f": max(1, f), "behaviours": behaviours, **extra}})

    add("warmup", "replay_verified", None, 0)  # data loading and first replays land here, not in the timed pairs
    for label in interleaved_order(["replay_verified", "fedavg"], timing_pairs):
        add(f"honest/{label}", label, None, 0)
    for aggregator in ("median", "trimmed_mean", "krum"):
        add(f"honest/{aggregator}", aggregator, None, 0)
    for f in f_values:
        for attack in ATTACKS:
            for aggregator in AGGREGATORS:
                add(f"{attack}/f{f}/{aggregator}", aggregator, attack, f)
    add("sampled/model-replacement", "replay_verified", "model-replacement", f_values[-1],
        replay_fraction=SAMPLED_FRACTION)
    return runs


def evaluate(run: dict[str, Any], summary: dict[str, Any], workers: int) -> dict[str, Any]:
    from pol.tasks import load_data
    from pol.workers.evaluate import accuracy, predictions
    from pol.workers.log import read_log
    from scripts.attacks_workers import BEHAVIOURS
    from scripts.attacks_workers.common import backdoor_accuracy

    final = read_log(run["spec"]["out"]).final_weights
    x, y = load_data("digits-mlp").heldout.tensors
    main = accuracy("digits-mlp", {}, final, x, y)
    backdoor = backdoor_accuracy(lambda xs: predictions("digits-mlp", {}, final, xs), x, y)
    malicious_ids = set(range(workers - run["f"] + 1, workers + 1)) if run["attack"] else set()
    attack = BEHAVIOURS[run["attack"]] if run["attack"] else None
    m_sub = m_acc = h_sub = h_rej = 0
    for s in summary["submissions"]:
        if s["status"] not in ("accepted", "rejected"):
            continue
        if s["worker"] in malicious_ids:
            if attack is not None and attack.malicious_in(s["round"]):
                m_sub += 1
                m_acc += s["status"] == "accepted"
        else:
            h_sub += 1
            h_rej += s["status"] == "rejected"
    return {"main_accuracy": round(main, 4), "backdoor_accuracy": round(backdoor, 4),
            "malicious_accepted": m_acc, "malicious_submitted": m_sub, "honest_rejected": h_rej,
            "honest_submitted": h_sub, "coordinator_seconds": round(summary["seconds"], 3),
            "trained_worker_steps": summary["trained_worker_steps"],
            "replayed_worker_steps": summary["replayed_worker_steps"]}


def heldout_size() -> int:
    from pol.tasks import load_data

    return len(load_data("digits-mlp").heldout)


def run_job(d: Path, runs: list[dict[str, Any]], workers: int) -> tuple[list[dict[str, Any]], float]:
    from pol.keys import generate_keypair
    from pol.workers.config import NodeConfig, RunSpec
    from pol.workers.launch import launch_local

    for name in ["coordinator"] + [f"worker{w}" for w in range(1, workers + 1)]:
        generate_keypair(d / name)
    config = NodeConfig([RunSpec(**r["spec"]) for r in runs], str(d / "coordinator.key"), str(d / "worker{rank}.key"),
                        summary=str(d / "summary.json"), verbose=False)
    config.save(d / "job.json")
    log(NAME, f"{len(runs)} federated runs, {workers} workers, one torch.distributed job")
    result = launch_local(d / "job.json", workers, timeout_s=7200)
    if result.coordinator_exit != 0 or any(code != 0 for code in result.worker_exits.values()):
        raise SystemExit(f"the job failed (coordinator exit {result.coordinator_exit}, workers {result.worker_exits})")
    return json.loads((d / "summary.json").read_text())["runs"], result.seconds


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "N = 4 workers, f = 1, 10 rounds (a few minutes on 2 cores)")
    p.add_argument("--workers", type=int, default=None, help="N (default 8; quick 4)")
    p.add_argument("--rounds", type=int, default=None, help="rounds per run (default 20; quick 10)")
    p.add_argument("--local-steps", type=int, default=10)
    p.add_argument("--timing-pairs", type=int, default=None, help="interleaved honest pairs (default 3; quick 2)")
    args = p.parse_args(argv)
    workers = args.workers or (4 if args.quick else 8)
    rounds = args.rounds or (10 if args.quick else 20)
    pairs = args.timing_pairs or (2 if args.quick else 3)
    f_values = sorted({1, max(1, workers // 4)})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        d = Path(tmp)
        runs = plan_runs(d, workers, f_values, rounds, args.local_steps, pairs)
        summaries, job_seconds = run_job(d, runs, workers)
        results = [evaluate(run, s, workers) for run, s in zip(runs, summaries)]
    by_label = {run["label"]: res for run, res in zip(runs, results)}
    honest_rv = [r for run, r in zip(runs, results) if run["label"] == "honest/replay_verified"]
    honest_fa = [r for run, r in zip(runs, results) if run["label"] == "honest/fedavg"]
    all_honest = honest_fa[0]["main_accuracy"]
    aggregators: dict[str, dict[str, Any]] = {a: {} for a in AGGREGATORS}
    for run, res in zip(runs, results):
        if run["attack"] and run["label"].split("/")[0] != "sampled":
            key = f"{run['attack'].replace('-', '_')}_f{run['f']}"
            aggregators[run["aggregator"]][key] = res
    for a in AGGREGATORS:
        aggregators[a]["no_attack"] = by_label[f"honest/{a}"]
    rv = {k: v for k, v in aggregators["replay_verified"].items() if k != "no_attack"}
    rv_runs = [r for run, r in zip(runs, results) if run["aggregator"] == "replay_verified"
               and run["label"].split("/")[0] != "sampled"]
    sampled = by_label["sampled/model-replacement"]
    result: dict[str, Any] = {
        "benchmark": NAME, "quick": args.quick, "machine": machine_info(),
        "setup": {"task": "digits-mlp", "workers": workers, "f_values": f_values, "rounds": rounds,
                  "local_steps": args.local_steps, "batch_size": 32, "malicious": "the f highest worker ids",
                  "default_policy": {"replay_fraction": 1.0, "exclusion": "ban"}},
        "aggregators": aggregators,
        "all_honest_accuracy": all_honest,
        "heldout_samples": heldout_size(),
        "clean_backdoor_accuracy": honest_fa[0]["backdoor_accuracy"],
        "replay_verified": {
            "malicious_accepted": sum(v["malicious_accepted"] for v in rv.values()),
            "malicious_submitted": sum(v["malicious_submitted"] for v in rv.values()),
            "honest_rejected": sum(v["honest_rejected"] for v in rv.values()) + sum(h["honest_rejected"]
                                                                                 for h in honest_rv),
            "max_accuracy_drop": round(100 * max(all_honest - v["main_accuracy"] for v in rv.values()), 2),
            "mean_accuracy_drop": round(100 * sum(all_honest - v["main_accuracy"] for v in rv.values()) / len(rv), 2),
            "max_backdoor_accuracy": max(v["backdoor_accuracy"] for v in rv.values()),
            "honest_run_equals_fedavg": honest_rv[0]["main_accuracy"] == all_honest,
        },
        "verify_compute_fraction": round(sum(r["replayed_worker_steps"] for r in rv_runs)
                                         / sum(r["trained_worker_steps"] for r in rv_runs), 4),
        "coordinator_overhead_vs_fedavg": round(median_paired_ratio(
            [r["coordinator_seconds"] for r in honest_rv], [r["coordinator_seconds"] for r in honest_fa]), 3),
        "coordinator_seconds": {"replay_verified": [r["coordinator_seconds"] for r in honest_rv],
                                "fedavg": [r["coordinator_seconds"] for r in honest_fa]},
        "sampled_policy": {"replay_fraction": SAMPLED_FRACTION, "attack": "model-replacement", "f": f_values[-1],
                           **sampled,
                           "detection_probability_per_round": "ceil(0.5 k)/k of the k submissions replayed"},
        "job_seconds": round(job_seconds, 1), "elapsed_s": round(time.perf_counter() - started, 1),
    }
    rows = []
    for key in sorted(rv):
        row = [key]
        for a in AGGREGATORS:
            v = aggregators[a][key]
            row.append(f"{100 * v['main_accuracy']:.1f}/{100 * v['backdoor_accuracy']:.0f} "
                       f"({v['malicious_accepted']}/{v['malicious_submitted']})")
        rows.append(row)
    table = format_table(rows, ["attack", *AGGREGATORS])
    table += (f"\ncells: main accuracy %/backdoor accuracy % (malicious accepted/submitted); all-honest accuracy "
              f"{100 * all_honest:.1f}%, clean backdoor {100 * result['clean_backdoor_accuracy']:.0f}%\n"
              f"replay_verified: malicious accepted {result['replay_verified']['malicious_accepted']}, honest rejected "
              f"{result['replay_verified']['honest_rejected']}, max accuracy drop "
              f"{result['replay_verified']['max_accuracy_drop']} points; verify_compute_fraction "
              f"{result['verify_compute_fraction']}; coordinator wall time vs fedavg "
              f"{result['coordinator_overhead_vs_fedavg']}x")
    emit(result, as_json=args.json, table=table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
