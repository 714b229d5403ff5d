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
* :class:`Resamples` / :func:`bootstrap` — a hierarchical bootstrap (trials, e.g. training
  seeds, resampled with replacement; then samples within each trial, stratified by label) of
  the mean over trials of a per-trial statistic: the point estimate and a 95% percentile
  interval. Statistics are computed for all resamples at once (:func:`auc_rows`,
  :func:`crossfit_advantage_rows`).
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


def _counts(s: np.ndarray, y: np.ndarray, idx: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per resample (row of ``idx``): how many positives and negatives hold each distinct score
    value (columns in ascending score order), counting only elements where ``keep``."""
    values, inverse = np.unique(s, return_inverse=True)
    k = len(values)
    flat = inverse[idx] + k * np.arange(idx.shape[0])[:, None]
    pos = y[idx]
    sel_pos, sel_neg = (pos, ~pos) if keep is None else (pos & keep, ~pos & keep)
    n = idx.shape[0] * k
    cpos = np.bincount(flat[sel_pos], minlength=n).reshape(-1, k).astype(np.float64)
    cneg = np.bincount(flat[sel_neg], minlength=n).reshape(-1, k).astype(np.float64)
    if (cpos.sum(1) == 0).any() or (cneg.sum(1) == 0).any():
        raise ValueError("every resample needs both classes")
    return cpos, cneg


def auc_rows(scores: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """:func:`roc_auc` of every resample ``scores[idx[r]]`` at once (Mann-Whitney from counts)."""
    s, y = _check(scores, labels)
    cpos, cneg = _counts(s, y, np.atleast_2d(idx))
    below = np.cumsum(cneg, axis=1) - cneg
    return (cpos * (below + 0.5 * cneg)).sum(1) / (cpos.sum(1) * cneg.sum(1))


def _rates_descending(cpos: np.ndarray, cneg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TPR, FPR of ``score >= t`` for t = +inf, then every distinct value in descending order."""
    zero = np.zeros((cpos.shape[0], 1))
    tp = np.concatenate([zero, np.cumsum(cpos[:, ::-1], axis=1)], axis=1)
    fp = np.concatenate([zero, np.cumsum(cneg[:, ::-1], axis=1)], axis=1)
    return tp / cpos.sum(1, keepdims=True), fp / cneg.sum(1, keepdims=True)


def crossfit_advantage_rows(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                            idx: np.ndarray) -> np.ndarray:
    """:func:`crossfit_advantage` of every resample at once (the same threshold rule: the highest
    threshold reaching the fitting fold's maximum)."""
    s, y = _check(scores, labels)
    idx = np.atleast_2d(idx)
    f = np.asarray(folds)[idx]
    rows = np.arange(idx.shape[0])
    out = np.zeros(idx.shape[0])
    for fit in (0, 1):
        tpr_a, fpr_a = _rates_descending(*_counts(s, y, idx, f == fit))
        best = np.argmax(tpr_a - fpr_a, axis=1)
        tpr_b, fpr_b = _rates_descending(*_counts(s, y, idx, f != fit))
        out += tpr_b[rows, best] - fpr_b[rows, best]
    return out / 2


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


RowStat = Callable[[int, np.ndarray], np.ndarray]   # (trial, index rows (B, n)) -> one value per row


class Resamples:
    """The bootstrap draws of a set of trials, made once and shared by every statistic.

    Hierarchical: each resample draws the trials with replacement, and within each trial its
    samples with replacement (stratified by ``strata[t]`` when given, so class counts stay
    fixed). A trial drawn twice in one resample reuses its within-trial draw, which can only
    widen the interval. Statistics evaluated on the same ``Resamples`` are paired: the
    interval of a difference between two attacks is the interval of the paired difference.
    """

    def __init__(self, strata: Sequence[np.ndarray | None], sizes: Sequence[int], *, n_boot: int, seed: int):
        if not sizes or len(strata) != len(sizes):
            raise ValueError("bootstrap needs at least one trial and one stratum entry per trial")
        rng = np.random.default_rng(seed)
        self.sizes, self.n_boot = [int(n) for n in sizes], n_boot
        self.picks = rng.integers(0, len(sizes), (n_boot, len(sizes)))
        self.rows = []
        for t, n in enumerate(self.sizes):
            groups = [np.arange(n)] if strata[t] is None else [
                np.flatnonzero(np.asarray(strata[t]) == v) for v in np.unique(strata[t])]
            self.rows.append(np.concatenate([g[rng.integers(0, len(g), (n_boot, len(g)))] for g in groups], axis=1))

    def estimate(self, stat: RowStat) -> Estimate:
        per_trial = tuple(float(stat(t, np.arange(n)[None, :])[0]) for t, n in enumerate(self.sizes))
        values = np.stack([np.asarray(stat(t, self.rows[t]), dtype=np.float64) for t in range(len(self.sizes))])
        means = values[self.picks, np.arange(self.n_boot)[:, None]].mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        return Estimate(float(np.mean(per_trial)), (float(lo), float(hi)), len(self.sizes), sum(self.sizes),
                        self.n_boot, per_trial)


def bootstrap(strata: Sequence[np.ndarray | None], stat: RowStat, *, sizes: Sequence[int], n_boot: int,
              seed: int) -> Estimate:
    """Mean over trials of a per-trial statistic, with its hierarchical 95% interval."""
    return Resamples(strata, sizes, n_boot=n_boot, seed=seed).estimate(stat)
