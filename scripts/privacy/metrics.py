"""Attack metrics and their spread.

Conventions: an attack gives every sample a score, higher meaning "more likely a member"
(or "more likely the positive label"); ``labels`` are 1 for members (positives), 0 otherwise.

* :func:`roc_auc` — area under the ROC curve (Mann-Whitney, ties count one half).
* :func:`best_threshold_advantage` — max over thresholds of TPR - FPR, chosen on the same
  samples it is measured on. On finite samples this is biased upward even for a useless attack
  (about ``1.36 * sqrt(1/n1 + 1/n0)`` at chance, the Kolmogorov-Smirnov scale).
* :func:`crossfit_advantage` — the threshold is chosen on one half of the samples and TPR - FPR
  measured on the other half (both ways, averaged): an unbiased estimate of what a threshold
  fixed in advance achieves, 0 in expectation at chance. This is the ``advantage`` the
  benchmark reports.
* :func:`bootstrap` — a hierarchical bootstrap (trials, e.g. training seeds, resampled with
  replacement; then samples within each trial, stratified by label) of the mean over trials of
  a per-trial statistic: the point estimate and a 95% percentile interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores for {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return s, y


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    boundaries = np.flatnonzero(np.diff(sorted_v)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(v)]))
    ranks_sorted = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    ranks = np.empty(len(v), dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    s, y = _check(scores, labels)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("AUC needs both classes")
    r = average_ranks(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def _roc_points(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds (descending, distinct, +inf first) and TPR, FPR of ``score >= threshold``."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_value = np.flatnonzero(np.diff(s_sorted) != 0)
    cut = np.concatenate((last_of_value, [len(s) - 1]))
    tp = np.cumsum(y_sorted)[cut]
    fp = np.cumsum(~y_sorted)[cut]
    n1, n0 = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    thresholds = np.concatenate(([np.inf], s_sorted[cut]))
    return thresholds, np.concatenate(([0.0], tp / n1)), np.concatenate(([0.0], fp / n0))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold ``t`` maximising TPR - FPR of the rule ``score >= t`` on these samples."""
    s, y = _check(scores, labels)
    thresholds, tpr, fpr = _roc_points(s, y)
    return float(thresholds[int(np.argmax(tpr - fpr))])


def advantage_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """TPR - FPR of the rule ``score >= threshold``."""
    s, y = _check(scores, labels)
    if not y.any() or y.all():
        raise ValueError("advantage needs both classes")
    pred = s >= threshold
    return float(pred[y].mean() - pred[~y].mean())


def best_threshold_advantage(scores: np.ndarray, labels: np.ndarray) -> float:
    s, y = _check(scores, labels)
    _, tpr, fpr = _roc_points(s, y)
    return float(np.max(tpr - fpr))


def folds_for(labels: np.ndarray, seed: int) -> np.ndarray:
    """A stratified two-fold assignment (0/1 per sample) for :func:`crossfit_advantage`."""
    y = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(y), dtype=np.int8)
    for cls in (True, False):
        idx = np.flatnonzero(y == cls)
        folds[rng.permutation(idx)[: len(idx) // 2]] = 1
    return folds


def crossfit_advantage(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> float:
    """Threshold chosen on one fold, TPR - FPR measured on the other; mean of both directions."""
    s, y = _check(scores, labels)
    f = np.asarray(folds)
    values = []
    for fit in (0, 1):
        a, b = f == fit, f != fit
        if y[a].all() or not y[a].any() or y[b].all() or not y[b].any():
            continue
        values.append(advantage_at(s[b], y[b], best_threshold(s[a], y[a])))
    if not values:
        raise ValueError("each fold needs both classes")
    return float(np.mean(values))


@dataclass(frozen=True)
class Estimate:
    """A mean over trials with its hierarchical-bootstrap 95% interval."""

    value: float
    ci95: tuple[float, float]
    trials: int
    samples: int
    resamples: int
    per_trial: tuple[float, ...]

    def as_dict(self, digits: int = 4) -> dict[str, Any]:
        return {"value": round(self.value, digits), "ci95": [round(self.ci95[0], digits), round(self.ci95[1], digits)],
                "trials": self.trials, "samples": self.samples, "bootstrap_resamples": self.resamples,
                "per_trial": [round(v, digits) for v in self.per_trial]}


def bootstrap(strata: Sequence[np.ndarray | None], stat: Callable[[int, np.ndarray], float], *, sizes: Sequence[int],
              n_boot: int, seed: int) -> Estimate:
    """Mean over trials of ``stat(trial, sample_indices)`` with a hierarchical 95% interval.

    ``sizes[t]`` is the number of samples of trial ``t``; ``strata[t]`` (labels, or None) makes
    the within-trial resampling keep each class's count. A trial whose resample makes
    ``stat`` raise ValueError (e.g. one class missing) is drawn again.
    """
    rng = np.random.default_rng(seed)
    n_trials = len(sizes)
    if n_trials == 0 or len(strata) != n_trials:
        raise ValueError("bootstrap needs at least one trial and one stratum entry per trial")
    groups = []
    for t in range(n_trials):
        if strata[t] is None:
            groups.append([np.arange(sizes[t])])
        else:
            lab = np.asarray(strata[t])
            groups.append([np.flatnonzero(lab == v) for v in np.unique(lab)])
    per_trial = tuple(float(stat(t, np.arange(sizes[t]))) for t in range(n_trials))
    means = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(0, n_trials, n_trials) if n_trials > 1 else np.zeros(1, dtype=np.int64)
        vals = []
        for t in picked:
            for _attempt in range(20):
                idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups[t]])
                try:
                    vals.append(float(stat(int(t), idx)))
                    break
                except ValueError:
                    continue
            else:
                raise ValueError(f"trial {t}: no valid bootstrap resample in 20 draws")
        means[b] = np.mean(vals)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return Estimate(float(np.mean(per_trial)), (float(lo), float(hi)), n_trials, int(sum(sizes)), n_boot, per_trial)
