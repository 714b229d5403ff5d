"""The label-leakage experiment behind ``scripts/bench_privacy.py`` (``split.*``).

**Pipeline** (the headline figures): for each split (plain, U-shaped) and seed, ``pol split
train`` trains the built-in ``digits-mlp`` stages on "is it a 0" labels
(:mod:`scripts.privacy.pipeline_leakage`); every run is verified (``verify_pipeline``, as ``pol
split verify``); the attacks read what the node without labels received from its own proof.
Also on the pipeline: the built-in ten-digit task, and the label protection the pipeline commits
in its plan (``--label-noise``), with its accuracy cost and what a holder of the noise secret
recovers.

**Simulation** (:mod:`scripts.privacy.split_sim`, labelled so in the document): the same
architecture, data, batch size and noise rule computed in one process, as a cross-check that the
attacks see in the real transcripts what the tensors' mathematics predicts.

Trials are seeds, samples their batches (hierarchical bootstrap).
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from scripts.privacy import label_leakage, split_sim
from scripts.privacy.metrics import Estimate, bootstrap, roc_auc
from scripts.privacy.pipeline_leakage import PipelineRun, PipelineSettings, run_and_read

SPLITS = ("plain", "u_shaped")
RECEIVERS = {
    "plain": "node 0 (features, stage 0 = fc1+ReLU) receives from node 1 (stage 1 = fc2+ReLU+fc3 and the labels) "
             "the gradient of the loss w.r.t. its stage's output: 64 values per example",
    "u_shaped": "node 1 (stage 1 = fc2+ReLU) receives from node 0's head (stage 2 = fc3, with the labels) the "
                "gradient of the loss w.r.t. its stage's output: 32 values per example",
}


def log(msg: str) -> None:
    print(f"[bench_privacy] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class LeakageSettings:
    seeds: int = 3                     # pipeline runs per split, unprotected (the headline figures)
    epochs: int = 10
    steps: int | None = None           # overrides epochs (tests)
    multiclass_seeds: int = 1          # pipeline runs per split on the built-in ten digits (0: none)
    protections: tuple[str, ...] = ("iso:0.25", "iso:1", "iso:4", "max_norm")  # --label-noise values
    protection_seeds: int = 2
    n_boot: int = 400
    seed: int = 0


def _batch_estimate(per_seed: list[np.ndarray], n_boot: int, seed: int) -> Estimate:
    """Mean per-batch figure: trials are seeds, samples their batches."""
    return bootstrap([None] * len(per_seed), lambda t, i: per_seed[t][i].mean(axis=1),
                     sizes=[len(v) for v in per_seed], n_boot=n_boot, seed=seed)


def _scalar_estimate(values: list[float], n_boot: int, seed: int) -> Estimate:
    """Mean of one figure per seed (e.g. test accuracy): trials are seeds."""
    return bootstrap([None] * len(values), lambda t, i: np.full(i.shape[0], float(values[t])),
                     sizes=[1] * len(values), n_boot=n_boot, seed=seed)


def difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``a - b`` for two independent estimates, with a normal-approximation 95% interval from
    their two intervals (informational: the runs are not paired)."""
    half = math.hypot(*(max(e["value"] - e["ci95"][0], e["ci95"][1] - e["value"]) for e in (a, b)))
    d = a["value"] - b["value"]
    return {"value": round(d, 4), "ci95": [round(d - half, 4), round(d + half, 4)],
            "interval_contains_0": bool(d - half <= 0 <= d + half)}


def per_example_norm_auc(transcript: list[label_leakage.CutGradients], positive: np.ndarray) -> float:
    """The norm attack per *example* rather than per batch: the receiving node knows each row's
    dataset index from the plan (seed and sampler), so it can average an example's within-batch
    norm rank over every step that example appears in, and rank the whole training set."""
    total, seen = np.zeros(len(positive)), np.zeros(len(positive))
    for b in transcript:
        norms = label_leakage.norm_scores(b.rows())
        ranks = np.argsort(np.argsort(norms)) / max(len(norms) - 1, 1)
        np.add.at(total, b.indices, ranks)
        np.add.at(seen, b.indices, 1)
    keep = seen > 0
    return roc_auc(total[keep] / seen[keep], positive[keep])


class _Runner:
    """Trains pipeline runs in one work directory with one set of node keys, and keeps count."""

    def __init__(self, workdir: Path, settings: LeakageSettings):
        self.workdir, self.settings = workdir, settings
        self.keys = workdir / "keys"
        self.count, self.verified, self.train_seconds = 0, 0, []  # type: ignore[var-annotated]

    def run(self, split: str, seed: int, *, binary: bool = True, label_noise: str | None = None) -> PipelineRun:
        s = self.settings
        cfg = PipelineSettings(split=split, seed=seed, epochs=s.epochs, steps=s.steps, binary=binary,
                               label_noise=label_noise)
        self.count += 1
        run = run_and_read(cfg, self.workdir / f"run{self.count}", self.keys)
        self.verified += bool(run.verified)
        self.train_seconds.append(run.train_wall_seconds)
        return run


def _attack_figures(runs: list[Any], est: Any) -> dict[str, Estimate]:
    return {a: est([label_leakage.leak_aucs(r.transcript, r.positive, a) for r in runs]) for a in label_leakage.ATTACKS}


def _noise_kind(option: str) -> tuple[str, float | None]:
    """``--label-noise`` parsed as the pipeline parses it: (kind, ratio; None for max_norm)."""
    from pol.split.label_noise import parse_option

    kind, ratio = parse_option(option)  # type: ignore[misc]
    return kind, ratio if kind == "iso" else None


def run_label_leakage(settings: LeakageSettings, workdir: str | Path | None = None) -> dict[str, Any]:
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="bench-privacy-split-") as d:
            return run_label_leakage(settings, d)
    started = time.perf_counter()
    runner = _Runner(Path(workdir), settings)
    seeds = [settings.seed * 1000 + 11 + i for i in range(settings.seeds)]
    prot_seeds = seeds[:settings.protection_seeds]
    est = partial(_batch_estimate, n_boot=settings.n_boot, seed=settings.seed)
    scalar = partial(_scalar_estimate, n_boot=settings.n_boot, seed=settings.seed)
    out: dict[str, Any] = {"source": "pipeline: pol split train, transcripts read from the receiving node's proof",
                           "label_leakage_auc": {}, "label_leakage_ci95": {}, "label_leakage": {},
                           "control_shuffled_labels": {}, "control_permuted_labels": {},
                           "per_example_norm_auc": {}, "multiclass_digit0_vs_rest": {}, "protection": []}
    headline: dict[str, list[PipelineRun]] = {}
    for split in SPLITS:
        log(f"split (pipeline): {split}, unprotected, {len(seeds)} seeds")
        runs = headline[split] = [runner.run(split, s) for s in seeds]
        figs = _attack_figures(runs, est)
        out["label_leakage_auc"][split] = {a: round(e.value, 4) for a, e in figs.items()}
        out["label_leakage_ci95"][split] = {a: [round(x, 4) for x in e.ci95] for a, e in figs.items()}
        out["label_leakage"][split] = {**{a: e.as_dict() for a, e in figs.items()},
                                       "test_accuracy": scalar([r.test_accuracy for r in runs]).as_dict(),
                                       "receiver": RECEIVERS[split], "receiver_node": runs[0].receiver,
                                       "positive_rate_train": round(float(runs[0].positive.mean()), 4)}
        out["control_shuffled_labels"][split] = {a: est([label_leakage.leak_aucs(
            label_leakage.shuffled_within_batches(r.transcript, k), r.positive, a) for k, r in enumerate(runs)]).as_dict()
            for a in label_leakage.ATTACKS}
        out["control_permuted_labels"][split] = {a: est([label_leakage.leak_aucs(
            r.transcript, np.random.default_rng(k).permutation(r.positive), a) for k, r in enumerate(runs)]).as_dict()
            for a in label_leakage.ATTACKS}
        out["per_example_norm_auc"][split] = scalar([per_example_norm_auc(r.transcript, r.positive)
                                                     for r in runs]).as_dict()
        if settings.multiclass_seeds:
            log(f"split (pipeline): {split}, ten digits, {settings.multiclass_seeds} seeds")
            mc = [runner.run(split, s, binary=False) for s in seeds[:settings.multiclass_seeds]]
            out["multiclass_digit0_vs_rest"][split] = {
                **{a: e.as_dict() for a, e in _attack_figures(mc, est).items()},
                "test_accuracy": scalar([r.test_accuracy for r in mc]).as_dict()}
    for split in SPLITS:
        out["protection"].append(_protection_row(split, "none", headline[split], est, scalar))
        for option in settings.protections:
            log(f"split (pipeline): {split}, --label-noise {option}, {len(prot_seeds)} seeds")
            runs = [runner.run(split, s, label_noise=option) for s in prot_seeds]
            out["protection"].append(_protection_row(split, option, runs, est, scalar))
    out["verified"] = f"{runner.verified}/{runner.count}"
    pipeline_s = time.perf_counter() - started
    out["simulation"] = _simulation(settings, seeds, prot_seeds, out, est, scalar)
    out["setting"] = {
        "task": "digits-mlp stages (64-64-32-10), built-in digits data (1,500 train / 297 held out)",
        "labels": "digit 0 vs rest (scripts.privacy.data:digits_zero_vs_rest, about 10% positives); "
                  "multiclass_digit0_vs_rest: the built-in ten digits",
        "commands": {split: "pol split train " + " ".join(PipelineSettings(split=split, seed=seeds[0],
                                                                            epochs=settings.epochs,
                                                                            steps=settings.steps).train_args())
                     + " --out RUN --keys KEYS" for split in SPLITS},
        "optimizer": "SGD lr 0.05, momentum 0.9 (the task's)", "seeds": seeds, "protection_seeds": prot_seeds,
        "epochs": settings.epochs, "steps": settings.steps, "bootstrap_resamples": settings.n_boot}
    out["seconds"] = {"pipeline_runs": runner.count, "pol_split_train_wall_mean": round(float(np.mean(
        runner.train_seconds)), 2), "pipeline_total": round(pipeline_s, 1),
        "simulation": round(time.perf_counter() - started - pipeline_s, 1)}
    return out


def _protection_row(split: str, option: str, runs: list[PipelineRun], est: Any, scalar: Any) -> dict[str, Any]:
    kind, ratio = _noise_kind(option) if option != "none" else ("none", None)
    row: dict[str, Any] = {"split": split, "protection": kind, "noise_ratio": ratio,
                           "label_noise": None if option == "none" else option,
                           "leak_auc": {a: e.as_dict() for a, e in _attack_figures(runs, est).items()},
                           "leak_auc_secret_known": {},
                           "test_accuracy": scalar([r.test_accuracy for r in runs]).as_dict(),
                           "test_balanced_accuracy": scalar([r.test_balanced_accuracy for r in runs]).as_dict(),
                           "verified": f"{sum(bool(r.verified) for r in runs)}/{len(runs)}"}
    if option != "none":
        blocks = runs[0].settings.micro_batches
        row["leak_auc_secret_known"] = {a: est([label_leakage.leak_aucs(label_leakage.denoised(
            r.transcript, r.noise_direction, per_example=kind == "max_norm", blocks=blocks), r.positive, a)
            for r in runs]).as_dict() for a in label_leakage.ATTACKS}
    return row


def _simulation(settings: LeakageSettings, seeds: list[int], prot_seeds: list[int], pipeline: dict[str, Any],
                est: Any, scalar: Any) -> dict[str, Any]:
    """The same runs simulated in one process, and their agreement with the pipeline's figures."""
    sim: dict[str, Any] = {"note": "SIMULATION (scripts/privacy/split_sim.py): the pipeline's architecture, data, "
                                   "batch size, optimizer and noise rule computed in one process; other seeds",
                           "label_leakage_auc": {}, "protection": [], "agreement": {}}
    for split in SPLITS:
        log(f"split (simulation): {split}")
        cfg = split_sim.matching_pipeline(split, epochs=settings.epochs, steps=settings.steps)
        runs = [split_sim.train_split(cfg, s) for s in seeds]
        figs = {a: e.as_dict() for a, e in _attack_figures(runs, est).items()}
        sim["label_leakage_auc"][split] = figs
        sim["agreement"][split] = {a: difference(pipeline["label_leakage"][split][a], figs[a])
                                   for a in label_leakage.ATTACKS}
        for option in settings.protections:
            kind, ratio = _noise_kind(option)
            cfg = split_sim.matching_pipeline(split, epochs=settings.epochs, steps=settings.steps, protection=kind,
                                              noise_ratio=ratio or 0.0, noise_seed=settings.seed + 31337)
            runs = [split_sim.train_split(cfg, s) for s in prot_seeds]
            row = {"split": split, "label_noise": option,
                   "leak_auc": {a: e.as_dict() for a, e in _attack_figures(runs, est).items()},
                   "test_balanced_accuracy": scalar([r.test_balanced_accuracy for r in runs]).as_dict()}
            real = next(r for r in pipeline["protection"] if r["split"] == split and r["label_noise"] == option)
            row["pipeline_minus_simulation"] = {a: difference(real["leak_auc"][a], row["leak_auc"][a])
                                                for a in label_leakage.ATTACKS}
            sim["protection"].append(row)
    sim["setting"] = asdict(split_sim.matching_pipeline("plain", epochs=settings.epochs, steps=settings.steps))
    return sim
