"""The attack metrics: AUC, best-threshold and cross-fitted advantage, the bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from scripts.privacy import metrics


def test_auc_matches_scikit_learn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 300).astype(float)          # many ties
    labels = rng.integers(0, 2, 300)
    assert metrics.roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_and_advantage_of_perfect_and_reversed_scores() -> None:
    labels = np.array([1] * 10 + [0] * 10)
    good = np.arange(20, 0, -1).astype(float)
    assert metrics.roc_auc(good, labels) == 1.0
    assert metrics.roc_auc(-good, labels) == 0.0
    assert metrics.best_threshold_advantage(good, labels) == 1.0
    assert metrics.best_threshold_advantage(-good, labels) == 0.0   # "nobody is a member" is always available
    assert metrics.advantage_at(good, labels, metrics.best_threshold(good, labels)) == 1.0


def test_crossfit_advantage_is_unbiased_at_chance_where_best_threshold_is_not() -> None:
    rng = np.random.default_rng(1)
    labels = np.array([1] * 100 + [0] * 100)
    folds = metrics.folds_for(labels, 0)
    cross, best = [], []
    for _ in range(300):
        s = rng.standard_normal(200)
        cross.append(metrics.crossfit_advantage(s, labels, folds))
        best.append(metrics.best_threshold_advantage(s, labels))
    assert abs(np.mean(cross)) < 0.01
    assert np.mean(best) > 0.08          # the in-sample maximum's bias at n = 100 + 100


def test_crossfit_advantage_finds_a_real_signal() -> None:
    rng = np.random.default_rng(2)
    labels = np.array([1] * 200 + [0] * 200)
    scores = rng.standard_normal(400) + labels          # d' = 1: max TPR - FPR is about 0.38
    assert 0.28 < metrics.crossfit_advantage(scores, labels, metrics.folds_for(labels, 0)) < 0.48


def test_folds_are_stratified() -> None:
    labels = np.array([1] * 31 + [0] * 50)
    f = metrics.folds_for(labels, 3)
    assert abs(int(f[labels == 1].sum()) - 31 / 2) <= 0.5 and abs(int(f[labels == 0].sum()) - 25) <= 0.5


def test_bootstrap_interval_covers_the_mean_and_has_the_expected_width() -> None:
    rng = np.random.default_rng(3)
    values = [rng.normal(0.3, 1.0, 400) for _ in range(4)]
    est = metrics.bootstrap([None] * 4, lambda t, i: values[t][i].mean(axis=1), sizes=[400] * 4, n_boot=500, seed=0)
    assert est.ci95[0] < 0.3 < est.ci95[1]
    expected = 2 * 1.96 / np.sqrt(1600)
    assert 0.6 * expected < est.ci95[1] - est.ci95[0] < 1.6 * expected
    assert est.trials == 4 and est.samples == 1600 and len(est.per_trial) == 4


def test_bootstrap_stratified_keeps_class_counts() -> None:
    labels = np.array([1] * 5 + [0] * 95)
    r = metrics.Resamples([labels], [100], n_boot=50, seed=0)
    assert r.rows[0].shape == (50, 100)
    assert set(labels[r.rows[0]].sum(axis=1)) == {5}
    assert len(set(map(tuple, r.rows[0]))) == 50                     # 50 different draws


def test_bootstrap_resamples_trials_too() -> None:
    """Trials that disagree widen the interval beyond the within-trial noise."""
    same = [np.full(100, 0.5), np.full(100, 0.5)]
    apart = [np.full(100, 0.0), np.full(100, 1.0)]
    stat = (lambda v: lambda t, i: v[t][i].mean(axis=1))
    assert metrics.bootstrap([None] * 2, stat(same), sizes=[100] * 2, n_boot=200, seed=0).ci95 == (0.5, 0.5)
    lo, hi = metrics.bootstrap([None] * 2, stat(apart), sizes=[100] * 2, n_boot=200, seed=0).ci95
    assert lo == 0.0 and hi == 1.0


def test_vectorised_metrics_equal_the_scalar_ones_on_every_resample() -> None:
    rng = np.random.default_rng(4)
    labels = np.array([1] * 40 + [0] * 60)
    scores = np.round(rng.standard_normal(100) + 0.7 * labels, 1)      # ties included
    folds = metrics.folds_for(labels, 1)
    idx = metrics.Resamples([labels], [100], n_boot=40, seed=2).rows[0]
    auc = metrics.auc_rows(scores, labels, idx)
    adv = metrics.crossfit_advantage_rows(scores, labels, folds, idx)
    for r in range(40):
        i = idx[r]
        assert auc[r] == pytest.approx(metrics.roc_auc(scores[i], labels[i]), abs=1e-12)
        assert adv[r] == pytest.approx(metrics.crossfit_advantage(scores[i], labels[i], folds[i]), abs=1e-12)
