"""The two experiments behind ``scripts/bench_privacy.py``, with their settings.

:func:`run_membership` records target runs with the Recorder (a full and a compact proof of
each), runs the interactive challenge through ``pol challenge`` / ``pol respond`` / ``pol
verify``, trains the attacker's shadows, scores every attack on every access level and returns
the figures with hierarchical-bootstrap intervals (trials: targets; samples: candidates).

:func:`run_label_leakage` trains the in-process split (plain and U-shaped) over several seeds
and measures the leak AUC of the norm and cosine attacks, a control with the gradients shuffled
within each batch, and the effect of gradient-noise protection on leakage and accuracy
(trials: seeds; samples: batches).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np

from scripts.privacy import label_leakage, metrics, mia, runs, split_sim, views
from scripts.privacy.metrics import Estimate, bootstrap

COMPACT_K = 1_000_000        # larger than any checkpoint count: stores checkpoint 0 and the final weights
HEADLINE = {"weights": "trajectory", "full_proof": "trajectory", "compact_challenged": "trajectory",
            "commitments_only": "commitment_similarity"}


def log(msg: str) -> None:
    print(f"[bench_privacy] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class MembershipSettings:
    train: runs.TrainConfig = field(default_factory=runs.TrainConfig)
    targets: int = 3
    shadows: int = 8
    challenge_segments: int | None = None     # None: what `pol challenge` draws by default
    segment_sweep: tuple[int, ...] = ()       # extra challenge sizes for compact_challenged
    n_boot: int = 400
    seed: int = 0


class _Trials:
    """The trials' labels and cross-fit folds, and one set of bootstrap resamples shared by every
    figure (so a difference between two attacks is bootstrapped as a paired difference)."""

    def __init__(self, n_boot: int, seed: int):
        self.labels: list[np.ndarray] = []
        self.folds: list[np.ndarray] = []
        self.n_boot, self.seed = n_boot, seed

    def add(self, labels: np.ndarray, fold_seed: int) -> None:
        self.labels.append(np.asarray(labels))
        self.folds.append(metrics.folds_for(labels, fold_seed))

    @cached_property
    def resamples(self) -> metrics.Resamples:   # drawn once every trial has been added
        return metrics.Resamples(self.labels, [len(y) for y in self.labels], n_boot=self.n_boot, seed=self.seed)

    def _auc(self, s: Sequence[np.ndarray], t: int, i: np.ndarray) -> np.ndarray:
        return metrics.auc_rows(s[t], self.labels[t], i)

    def _adv(self, s: Sequence[np.ndarray], t: int, i: np.ndarray) -> np.ndarray:
        return metrics.crossfit_advantage_rows(s[t], self.labels[t], self.folds[t], i)

    def auc(self, s: Sequence[np.ndarray]) -> Estimate:
        return self.resamples.estimate(lambda t, i: self._auc(s, t, i))

    def advantage(self, s: Sequence[np.ndarray]) -> Estimate:
        return self.resamples.estimate(lambda t, i: self._adv(s, t, i))

    def auc_diff(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> Estimate:
        return self.resamples.estimate(lambda t, i: self._auc(a, t, i) - self._auc(b, t, i))

    def advantage_diff(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> Estimate:
        return self.resamples.estimate(lambda t, i: self._adv(a, t, i) - self._adv(b, t, i))

    def chance_best_threshold(self, permutations: int = 20) -> float:
        """Mean best-threshold advantage of random scores on these trials' sizes (its bias at chance)."""
        rng = np.random.default_rng(self.seed + 1)
        return float(np.mean([metrics.best_threshold_advantage(rng.standard_normal(len(y)), y)
                              for y in self.labels for _ in range(permutations)]))

    def attack_figures(self, s: Sequence[np.ndarray]) -> dict[str, Any]:
        best = [metrics.best_threshold_advantage(s[t], y) for t, y in enumerate(self.labels)]
        return {"auc": self.auc(s).as_dict(), "advantage": self.advantage(s).as_dict(),
                "advantage_best_threshold": round(float(np.mean(best)), 4)}


def _headline(attacks: dict[str, dict[str, Any]], attack: str) -> dict[str, Any]:
    a = attacks[attack]
    return {"attack": attack, "advantage": a["advantage"]["value"], "auc": a["auc"]["value"],
            "ci95": {"advantage": a["advantage"]["ci95"], "auc": a["auc"]["ci95"]},
            "trials": a["auc"]["trials"], "samples": a["auc"]["samples"]}


@dataclass
class _Attacker:
    """What the attacker builds once: its scorer, its shadows' statistics and commitments."""

    scorer: mia.Scorer
    stats: mia.ShadowStats
    committer: Any
    shadow_commitments: list[bytes]


@dataclass
class _Target:
    """One recorded target and every score the attacks gave its candidates."""

    labels: np.ndarray
    scores: dict[str, dict[str, np.ndarray]]      # access -> attack -> scores
    sweep: dict[int, np.ndarray]                  # challenged segments -> trajectory scores
    control_labels: np.ndarray
    control: dict[str, np.ndarray]                # access -> trajectory scores, never-trained "members"
    segments: list[int]
    disclosed: float
    verified: bool
    views_match: bool
    accuracy: tuple[float, float]                 # on members, on non-members


def _run_target(t: int, settings: MembershipSettings, attacker: _Attacker, d: Path, key: Path, pub: Path) -> _Target:
    from pol.tasks import seeded_weights

    cfg = settings.train
    split_seed, seed = settings.seed * 1000 + 101 + t, settings.seed * 1000 + 501 + t
    log(f"membership: target {t + 1}/{settings.targets}: recording a full and a compact proof")
    full = runs.record_target(cfg, d / f"t{t}.full.pol.h5", key, seed=seed, split_seed=split_seed)
    compact = runs.record_target(cfg, d / f"t{t}.compact.pol.h5", key, seed=seed, split_seed=split_seed,
                                 compact_k=COMPACT_K)
    challenge, response = views.challenge_and_respond(compact, d, segments=settings.challenge_segments,
                                                      seed=settings.seed * 1000 + t)
    verified = views.verify_challenged(compact, pub, challenge, response) == 0
    cand, lab = runs.target_candidates(cfg, split_seed)
    v_weights, v_full = views.final_weights_view(full), views.full_proof_view(full)
    v_compact = views.compact_challenged_view(compact, challenge, response)
    final = v_weights.checkpoints[v_weights.last]

    def trajectory_scores(view: views.View, candidates: np.ndarray) -> dict[str, np.ndarray]:
        return mia.view_scores(attacker.scorer, view.checkpoints, attacker.stats, candidates)

    scores = {v.access: trajectory_scores(v, cand) for v in (v_weights, v_full, v_compact)}
    init = seeded_weights(runs.MODEL_SPEC, cfg.model_kwargs, seed)  # the plan is public: so is the init
    scores["commitments_only"] = {
        "init_loss": mia.init_loss_scores(attacker.scorer, init, cand),
        "commitment_similarity": mia.commitment_similarity_scores(
            mia.commit_weights(final, attacker.committer), attacker.shadow_commitments, attacker.stats, cand)}
    sweep = {}
    for count in settings.segment_sweep:
        (d / f"sweep{count}").mkdir(exist_ok=True)
        ch, resp = views.challenge_and_respond(compact, d / f"sweep{count}", segments=count,
                                               seed=settings.seed * 1000 + t)
        sweep[count] = trajectory_scores(views.compact_challenged_view(compact, ch, resp), cand)["trajectory"]
    non = np.random.default_rng(t).permutation(cand[lab == 0])      # control: two halves of the non-members
    control_labels = (np.arange(len(non)) < len(non) // 2).astype(np.int8)
    control = {v.access: trajectory_scores(v, non)["trajectory"] for v in (v_weights, v_full)}
    matches = all(np.array_equal(w[k], v_full.checkpoints[i][k]) for i, w in v_compact.checkpoints.items() for k in w)
    return _Target(lab, scores, sweep, control_labels, control, list(v_compact.segments),
                   len(v_compact.disclosed) / cfg.members, verified, matches,
                   (attacker.scorer.accuracy(final, cand[lab == 1]), attacker.scorer.accuracy(final, cand[lab == 0])))


def run_membership(settings: MembershipSettings, workdir: str | os.PathLike[str]) -> dict[str, Any]:
    from pol.keys import generate_keypair
    from zk import Committer, Params

    cfg, d = settings.train, Path(workdir)
    key, pub = generate_keypair(d / "trainer")
    log(f"membership: {settings.shadows} shadow runs ({cfg.members} members, {cfg.epochs} epochs)")
    shadows = runs.train_shadows(cfg, settings.shadows, seed=settings.seed + 7919)
    scorer, committer = mia.Scorer(cfg), Committer(Params())
    attacker = _Attacker(scorer, mia.ShadowStats.of(scorer, shadows), committer,
                         [mia.commit_weights(s.checkpoints[-1], committer) for s in shadows])
    targets = [_run_target(t, settings, attacker, d, key, pub) for t in range(settings.targets)]
    log("membership: bootstrap")
    return _membership_figures(settings, targets)


def _membership_figures(settings: MembershipSettings, targets: list[_Target]) -> dict[str, Any]:
    trials, control_trials = _Trials(settings.n_boot, settings.seed), _Trials(settings.n_boot, settings.seed)
    for t, target in enumerate(targets):
        trials.add(target.labels, fold_seed=t)
        control_trials.add(target.control_labels, fold_seed=t)

    def per_trial(access: str, attack: str) -> list[np.ndarray]:
        return [target.scores[access][attack] for target in targets]

    out: dict[str, Any] = {}
    for access, by_attack in targets[0].scores.items():
        attacks = {name: trials.attack_figures(per_trial(access, name)) for name in by_attack}
        out[access] = {**_headline(attacks, HEADLINE[access]), "attacks": attacks}
    base = per_trial("weights", "trajectory")
    for access in ("full_proof", "compact_challenged"):
        s = per_trial(access, "trajectory")
        out[access]["minus_weights"] = {"advantage": trials.advantage_diff(s, base).as_dict(),
                                        "auc": trials.auc_diff(s, base).as_dict()}
    n_segments = settings.train.num_checkpoints - 1
    disclosed = [target.disclosed for target in targets]
    out["compact_challenged"].update({
        "segments_challenged": [target.segments for target in targets],
        "verified": f"{sum(target.verified for target in targets)}/{len(targets)}",
        "detection_probability": _detection(n_segments, len(targets[0].segments)),
        "views_match_full_proof": all(target.views_match for target in targets),
        "disclosed_member_fraction": {"mean": round(float(np.mean(disclosed)), 4),
                                      "per_trial": [round(x, 4) for x in disclosed]},
    })
    if settings.segment_sweep:
        out["compact_challenged"]["segment_sweep"] = {}
        for count in settings.segment_sweep:
            s = [target.sweep[count] for target in targets]
            out["compact_challenged"]["segment_sweep"][str(count)] = {
                "auc": trials.auc(s).as_dict(), "advantage": trials.advantage(s).as_dict(),
                "minus_weights_auc": trials.auc_diff(s, base).as_dict(),
                "minus_weights_advantage": trials.advantage_diff(s, base).as_dict(),
                "detection_probability": _detection(n_segments, count)}
    out["control_never_trained"] = {
        access: {"auc": control_trials.auc([target.control[access] for target in targets]).as_dict(),
                 "advantage": control_trials.advantage([target.control[access] for target in targets]).as_dict()}
        for access in targets[0].control}
    out["advantage_best_threshold_at_chance"] = round(trials.chance_best_threshold(), 4)
    acc = np.array([target.accuracy for target in targets])
    out["target_accuracy"] = {
        "members": {"mean": round(float(acc[:, 0].mean()), 4), "min": round(float(acc[:, 0].min()), 4)},
        "nonmembers": {"mean": round(float(acc[:, 1].mean()), 4),
                       "range": [round(float(acc[:, 1].min()), 4), round(float(acc[:, 1].max()), 4)]}}
    return out


def _detection(n_segments: int, count: int) -> dict[str, float]:
    """Probability that ``count`` random segments of ``n_segments`` hit a forged fraction f."""
    from verifier.sampling import detection_probability

    return {f"f={f}": round(detection_probability(n_segments, count, f), 4) for f in (0.1, 0.5)}


# -- split learning ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LeakageSettings:
    seeds: int = 3
    epochs: int = 10
    noise_ratios: tuple[float, ...] = (0.25, 1.0, 4.0)
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


def run_label_leakage(settings: LeakageSettings) -> dict[str, Any]:
    seeds = [settings.seed * 1000 + 11 + i for i in range(settings.seeds)]
    est = partial(_batch_estimate, n_boot=settings.n_boot, seed=settings.seed)
    auc: dict[str, dict[str, float]] = {}
    ci: dict[str, dict[str, list[float]]] = {}
    detail: dict[str, Any] = {}
    control: dict[str, Any] = {}
    multiclass: dict[str, Any] = {}
    for split in split_sim.SPLITS:
        log(f"split: {split}, unprotected, {len(seeds)} seeds")
        bin_runs = [split_sim.train_split(split_sim.SplitConfig(split=split, epochs=settings.epochs), s) for s in seeds]
        positive_rate = float(bin_runs[0].positive.mean())
        auc[split], ci[split], detail[split], control[split] = {}, {}, {}, {}
        for attack in label_leakage.ATTACKS:
            e = est([label_leakage.leak_aucs(r.transcript, r.positive, attack) for r in bin_runs])
            auc[split][attack], ci[split][attack] = round(e.value, 4), [round(x, 4) for x in e.ci95]
            detail[split][attack] = e.as_dict()
            shuffled = [label_leakage.leak_aucs(label_leakage.shuffled_within_batches(r.transcript, k), r.positive,
                                                attack) for k, r in enumerate(bin_runs)]
            control[split][attack] = est(shuffled).as_dict()
        detail[split]["test_accuracy"] = _scalar_estimate([r.test_accuracy for r in bin_runs], settings.n_boot,
                                                          settings.seed).as_dict()
        mc_runs = [split_sim.train_split(split_sim.SplitConfig(split=split, classes=10, epochs=settings.epochs), s)
                   for s in seeds]
        multiclass[split] = {a: est([label_leakage.leak_aucs(r.transcript, r.positive, a) for r in mc_runs]).as_dict()
                             for a in label_leakage.ATTACKS}
        multiclass[split]["test_accuracy"] = _scalar_estimate([r.test_accuracy for r in mc_runs], settings.n_boot,
                                                              settings.seed).as_dict()
    protection = []
    for split in split_sim.SPLITS:
        for kind, ratio in [("none", 0.0)] + [("iso", r) for r in settings.noise_ratios] + [("max_norm", 0.0)]:
            log(f"split: {split}, protection {kind}{f' x{ratio}' if kind == 'iso' else ''}")
            cfg = split_sim.SplitConfig(split=split, epochs=settings.epochs, protection=kind, noise_ratio=ratio,
                                        noise_seed=settings.seed + 31337)
            prot_runs = [split_sim.train_split(cfg, s) for s in seeds]
            regen = partial(split_sim.noise_direction, cfg.noise_seed)
            row: dict[str, Any] = {"split": split, "protection": kind, "noise_ratio": ratio if kind == "iso" else None,
                                   "leak_auc": {}, "leak_auc_seed_known": {}}
            for attack in label_leakage.ATTACKS:
                row["leak_auc"][attack] = est([label_leakage.leak_aucs(r.transcript, r.positive, attack)
                                               for r in prot_runs]).as_dict()
                if kind == "none":
                    continue
                row["leak_auc_seed_known"][attack] = est([label_leakage.leak_aucs(
                    label_leakage.denoised(r.transcript, regen, per_example=kind == "max_norm"), r.positive, attack)
                    for r in prot_runs]).as_dict()
            row["test_accuracy"] = _scalar_estimate([r.test_accuracy for r in prot_runs], settings.n_boot,
                                                    settings.seed).as_dict()
            row["test_balanced_accuracy"] = _scalar_estimate([r.test_balanced_accuracy for r in prot_runs],
                                                             settings.n_boot, settings.seed).as_dict()
            protection.append(row)
    return {"label_leakage_auc": auc, "label_leakage_ci95": ci, "label_leakage": detail,
            "control_shuffled_labels": control, "multiclass_digit0_vs_rest": multiclass, "protection": protection,
            "setting": {**asdict(split_sim.SplitConfig(epochs=settings.epochs)), "seeds": seeds,
                        "positive_rate_train": round(positive_rate, 4)}}
