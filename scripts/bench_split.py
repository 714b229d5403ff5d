#!/usr/bin/env python
"""Split learning: recording overhead, proof sizes, verification cost, attacks, false rejections.

    python scripts/bench_split.py --json            # 300-step overhead runs, 5 pairs; 20 honest runs
    python scripts/bench_split.py --json --quick    # 120 steps, 3 pairs; 5 honest runs

Everything runs as real node processes on torch.distributed (gloo on CPU), one torch thread each.

* ``overhead_vs_bare``: digits-mlp cut in 3 stages (3 processes), ``--steps`` steps, k=10, 2
  micro-batches per step. In the *same* processes (one process group, one agreed plan) the whole
  run is trained again and again, alternating recorded runs (every message hashed, signed,
  checked, recorded; checkpoints; the proof written and signed) and bare runs (the same headers
  carrying only shapes; nothing hashed, signed, checked or recorded): ``r b b r r b ...``. A run
  is timed on node 0 between two barriers, so it covers the slowest node and the proof
  finishing. The figure is the median over pairs of recorded / bare (goal <= 1.15).
  ``cpu_ratio`` (informational) is the same ratio of the CPU seconds all nodes spent (every
  thread of every node process, gloo's and the proof writer's included);
  ``training_thread_cpu_ratio`` only that of the nodes' training threads (where hashing,
  signing and checking happen): both less sensitive to other load on the machine than wall time.
* ``signing``: the per-message costs of the signed link alone (digest + sign on the sender,
  parse + signature check + digest on the receiver), timed in one process, and the share of a
  bare step they amount to (informational).
* ``equivalent_to_single_process``: the last recorded run's final stage weights, concatenated,
  equal bitwise the single-process reference (pol.split.reference).
* ``proof``: bytes per node, and against raw float32 (every stored checkpoint tensor + every
  received tensor, uncompressed); ``transcript_bytes_per_step``: stored transcript bytes (headers
  + coded tensors, all nodes) per training step.
* ``verify_fraction``: replayed node-steps / trained node-steps at the default segment count.
* ``attacks.<name>``: every attack of scripts/attacks_split, on a 20-step 3-stage pipeline, judged
  at the default segment count with the verifier's seed: ``detected``, ``blamed_correctly``.
* ``honest_false_rejections``: honest runs (digits-mlp 2 and 3 stages, digits-cnn 3 stages, both
  label placements, several seeds) verified at default settings.
"""

from __future__ import annotations

import json
import os
import statistics
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
    goal,
    interleaved_order,
    load_now,
    log,
    machine_info,
    median_paired_ratio,
    paired_ratios,
)

NAME = "bench_split"
RESULT = "BENCH_SPLIT_RESULT "
HONEST_CONFIGS = [("digits-mlp", 2, "last"), ("digits-mlp", 3, "last"), ("digits-mlp", 3, "first"),
                  ("digits-cnn", 3, "last"), ("digits-cnn", 3, "first")]


# -- the worker: one node process of the overhead measurement ---------------------------------

def worker(argv: list[str]) -> None:
    """``python -m scripts.bench_split --worker CONFIG_JSON ROUNDS OUT KEYS``: agree once, then
    train the run again and again, alternating recorded and bare; node 0 prints the times."""
    import torch
    import torch.distributed as dist

    from pol.split.comm import init_group
    from pol.split.node import NodeRuntime
    from pol.split.planning import SplitConfig

    config_json, rounds, out, keys = argv[0], int(argv[1]), Path(argv[2]), Path(argv[3])
    torch.set_num_threads(1)
    rank, world, device = init_group(600)
    runtime = NodeRuntime(SplitConfig.from_json(config_json), rank=rank, world=world, device=device,
                          out_dir=out, keys_dir=keys, force=True)
    runtime.setup()
    order = ["bare", "recorded"] + interleaved_order(["recorded", "bare"], rounds)  # first pair: warm-up
    times: list[tuple[str, float, float, float]] = []
    for label in order:
        dist.barrier()
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        runtime.train(record=label == "recorded", proof_path=out / f"node{rank}.pol.h5")
        cpu = torch.tensor([time.process_time() - c0, time.thread_time() - m0], dtype=torch.float64)
        dist.barrier()
        wall = time.perf_counter() - t0
        cpus = [torch.zeros_like(cpu) for _ in range(world)]
        dist.all_gather(cpus, cpu)  # CPU seconds of every node: all threads of its process; its training thread
        times.append((label, wall, float(sum(c[0].item() for c in cpus)), float(sum(c[1].item() for c in cpus))))
    if rank == 0:
        print(RESULT + json.dumps({"times": times[2:], "warmup": times[:2]}), flush=True)
    dist.destroy_process_group()


# -- figures ----------------------------------------------------------------------------------

def overhead(d: Path, keys: Path, steps: int, pairs: int) -> dict[str, Any]:
    from pol.split.launch import launch_local, raise_for_failure
    from pol.split.planning import SplitConfig

    config = SplitConfig(task="digits-mlp", stages=3, steps=steps, every=10, micro_batches=2)
    out = d / "overhead"
    result = launch_local(["--worker", config.to_json(), str(pairs), str(out), str(keys)], config.num_nodes,
                          module="scripts.bench_split")
    raise_for_failure(result)
    doc = next(json.loads(line[len(RESULT):]) for o in result.outcomes for line in o.stdout.splitlines()
               if line.startswith(RESULT))
    def column(which: str, i: int) -> list[float]:
        return [row[i] for row in doc["times"] if row[0] == which]

    recorded, bare = column("recorded", 1), column("bare", 1)
    for label, t, c, m in doc["times"]:
        log(NAME, f"{label:8s} {t:6.2f} s ({t / steps * 1e3:.2f} ms/step), CPU of all nodes {c:.2f} s "
                  f"(training threads {m:.2f} s)")
    training_extra = statistics.median(column("recorded", 3)) - statistics.median(column("bare", 3))
    return {"overhead_vs_bare": median_paired_ratio(recorded, bare),
            "pairs": [round(r, 4) for r in paired_ratios(recorded, bare)],
            "cpu_ratio (informational)": round(median_paired_ratio(column("recorded", 2), column("bare", 2)), 4),
            "training_thread_cpu_ratio (informational)": round(median_paired_ratio(column("recorded", 3),
                                                                                   column("bare", 3)), 4),
            "training_thread_extra_cpu_ms_per_step (all nodes)": round(training_extra / steps * 1e3, 3),
            "recorded_s": [round(t, 3) for t in recorded], "bare_s": [round(t, 3) for t in bare],
            "bare_step_ms": round(statistics.median(bare) / steps * 1e3, 3),
            "recorded_step_ms": round(statistics.median(recorded) / steps * 1e3, 3),
            "steps": steps, "every": 10, "micro_batches": 2, "stages": 3, "run_dir": out}


def signing_costs(bare_step_ms: float, messages_per_step: int) -> dict[str, Any]:
    """Per-message cost of the signed link's own work (no network), median of 5 x 2000 messages."""
    import torch
    from nacl.signing import SigningKey

    from pol.split.messages import Header, sign_header, signature_valid, tensor_digest

    key = SigningKey.generate()
    vk = key.verify_key
    x = torch.randn(16, 64)
    n = 2000

    def send_side() -> bytes:
        h = Header(b"p" * 32, 1, 0, 0, 1, 1, 2, tensor_digest(x.numpy()), "float32", (16, 64))
        return sign_header(h, key).to_bytes()

    raw = send_side()

    def recv_side() -> None:
        h = Header.from_bytes(raw)
        assert signature_valid(h, vk) and tensor_digest(x.numpy()) == h.digest

    out = {}
    for name, fn in (("sender_us", send_side), ("receiver_us", recv_side)):
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                fn()
            runs.append((time.perf_counter() - t) / n * 1e6)
        out[name] = round(statistics.median(runs), 2)
    per_step_ms = messages_per_step * (out["sender_us"] + out["receiver_us"]) / 1e3
    out.update({"messages_per_step": messages_per_step, "link_work_per_step_ms": round(per_step_ms, 3),
                "share_of_bare_step (informational)": round(per_step_ms / bare_step_ms, 4) if bare_step_ms else None})
    return out


def proof_sizes(run: Path) -> dict[str, Any]:
    import h5py

    from pol.split.proof import NodeProofReader

    nodes = []
    transcript_total = 0
    steps = 0
    for path in sorted(run.glob("node*.pol.h5")):
        with NodeProofReader(path) as r:
            steps = r.plan.num_steps
            raw = sum(int(v.nbytes) for i in r.stored_checkpoints for v in r.checkpoint_state(i).values())
            received = sum(int(t.nbytes) for i in r.transcript_segments for t in r.transcript(i).received_tensors)
        with h5py.File(path, "r") as f:
            stored_transcript = 0

            def add(_: str, obj: Any) -> None:
                nonlocal stored_transcript
                if isinstance(obj, h5py.Dataset):
                    stored_transcript += obj.id.get_storage_size()

            f["transcript"].visititems(add)
        size = path.stat().st_size
        transcript_total += stored_transcript
        nodes.append({"node": path.name, "bytes": size, "raw_float32_bytes": raw + received,
                      "ratio_to_raw_float32": round(size / (raw + received), 4),
                      "transcript_bytes": stored_transcript, "received_tensor_raw_bytes": received})
    return {"nodes": nodes, "transcript_bytes_per_step": round(transcript_total / max(steps, 1), 1),
            "transcript_bytes_per_step_per_node": [round(n["transcript_bytes"] / max(steps, 1), 1) for n in nodes]}


def equivalence(run: Path) -> bool:
    import numpy as np

    from pol.split.data import training_columns
    from pol.split.proof import run_final_weights
    from pol.split.reference import train_reference

    plan, weights = run_final_weights(run)
    x, y = training_columns(plan.data["spec"], plan.data["kwargs"])
    expected = train_reference(plan, x, y)
    return sorted(expected) == sorted(weights) and all(np.array_equal(expected[k], weights[k]) for k in expected)


def verification(run: Path, keys: Path, train_s: float) -> dict[str, Any]:
    from verifier.split import SplitVerifyOptions, verify_pipeline

    t = time.perf_counter()
    report = verify_pipeline(run, keys=keys, options=SplitVerifyOptions(seed=0))
    seconds = time.perf_counter() - t
    return {"verdict": report.verdict, "verify_fraction": report.info["verify_fraction"],
            "segments_replayed": {r.info["rank"]: f"{r.info['segments_replayed']}/{r.info['segments_total']}"
                                  for r in report.nodes},
            "detection_probability_one_forged_segment": {r.info["rank"]: r.info["detection_probability"]
                                                         ["one forged segment"] for r in report.nodes},
            "verify_s": round(seconds, 2), "replay_s": round(sum(r.info["replay_seconds"] for r in report.nodes), 3),
            "recorded_train_s": round(train_s, 3)}


def attacks(d: Path, keys: Path, honest: Path) -> dict[str, Any]:
    from scripts.attacks_split import ATTACKS, run_attack

    rows = {}
    for name, attack in ATTACKS.items():
        t = time.perf_counter()
        outcome = run_attack(attack, d / "attacks" / name, keys, honest_run=honest, verifier_seed=0)
        rows[name] = {"description": attack.description, **outcome.as_dict()}
        log(NAME, f"attack {name}: detected={outcome.detected} blamed_correctly={outcome.blamed_correctly} "
                  f"blamed={outcome.blamed} by {outcome.caught_by or outcome.detail[:80]} ({time.perf_counter() - t:.0f} s)")
    return rows


def honest_sweep(d: Path, keys: Path, seeds: list[int]) -> dict[str, Any]:
    """Honest runs over every configuration and seed, verified at default settings."""
    from scripts.attacks_split import train_run
    from verifier.split import SplitVerifyOptions, verify_pipeline

    runs = []
    for task, stages, labels in HONEST_CONFIGS:
        for seed in seeds:
            out = d / "honest" / f"{task}-{stages}-{labels}-{seed}"
            result = train_run(out, keys, args=["--task", task, "--stages", str(stages), "--labels-at", labels,
                                                "--seed", str(seed), "--steps", "20", "--every", "5"])
            verdict = "run failed" if not result.ok else \
                verify_pipeline(out, keys=keys, options=SplitVerifyOptions()).verdict
            runs.append({"task": task, "stages": stages, "labels_at": labels, "seed": seed, "verdict": verdict})
            log(NAME, f"honest {task} {stages} stages labels at {labels} seed {seed}: {verdict}")
    return {"honest_runs": len(runs), "honest_false_rejections": sum(r["verdict"] != "verified" for r in runs),
            "honest_detail": runs}


def run(quick: bool, d: Path) -> dict[str, Any]:
    from pol.keys import generate_keypair
    from scripts.attacks_split import train_run

    keys = d / "keys"
    for r in range(3):
        generate_keypair(keys / f"node{r}")
    steps, pairs = (120, 3) if quick else (300, 5)
    log(NAME, f"overhead: {steps} steps, {pairs} pairs (load {load_now()})")
    over = overhead(d, keys, steps, pairs)
    run_dir = over.pop("run_dir")
    doc: dict[str, Any] = {"overhead_vs_bare": over["overhead_vs_bare"], "overhead": over,
                           "overhead_goal": goal(over["overhead_vs_bare"], 1.15)}
    doc["signing"] = signing_costs(over["bare_step_ms"], messages_per_step=2 * (3 - 1) * 2)
    doc["equivalent_to_single_process"] = equivalence(run_dir)
    doc["proof"] = proof_sizes(run_dir)
    doc["transcript_bytes_per_step"] = doc["proof"]["transcript_bytes_per_step"]
    doc["verification"] = verification(run_dir, keys, statistics.median(over["recorded_s"]))
    doc["verify_fraction"] = doc["verification"]["verify_fraction"]
    honest = d / "attack-victim"
    result = train_run(honest, keys)
    if not result.ok:
        raise RuntimeError(f"the honest victim run failed: {result.first_failure.error_line}")  # type: ignore[union-attr]
    doc["attacks"] = attacks(d, keys, honest)
    doc.update(honest_sweep(d, keys, [0] if quick else [0, 1, 2, 3]))
    doc["machine"] = machine_info()
    doc["load_at_end"] = load_now()
    return doc


def render(doc: dict[str, Any]) -> str:
    rows = [["overhead_vs_bare (3 stages, digits-mlp)", round(doc["overhead_vs_bare"], 4), doc["overhead_goal"]],
            ["equivalent_to_single_process", doc["equivalent_to_single_process"], ""],
            ["transcript_bytes_per_step", doc["transcript_bytes_per_step"], ""],
            ["verify_fraction", doc["verify_fraction"], ""],
            ["honest_false_rejections", f"{doc['honest_false_rejections']}/{doc['honest_runs']}", ""]]
    rows += [[f"node {n['node']} proof / raw float32", n["ratio_to_raw_float32"], f"{n['bytes']} bytes"]
             for n in doc["proof"]["nodes"]]
    rows += [[f"attack {k}", f"detected={v['detected']} blamed_correctly={v['blamed_correctly']}",
              v["caught_by"] or v["detail"][:60]] for k, v in doc["attacks"].items()]
    return format_table(rows, ["figure", "value", "note"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
        return
    parser = bench_parser(__doc__, "120-step overhead runs, 3 pairs, 5 honest runs (about 5 minutes on 2 cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        doc = run(args.quick, Path(tmp))
    emit(doc, as_json=args.json, table=render(doc))


if __name__ == "__main__":
    main()
