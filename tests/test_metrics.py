"""Metrics: vectorised bootstrap statistics equal scikit-learn's; the bootstrap is seeded,
resamples whole exams and drops one-class resamples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mammocli.analysis import metrics
from mammocli.errors import InputError


def test_batch_statistics_equal_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((6, 150)) < 0.2).astype(np.int64)
    scores = np.round(rng.random((6, 150, 4)), 1)  # coarse values: many ties
    roc, pr = metrics.batch_auroc_auprc(y, scores)
    for b in range(6):
        for j in range(4):
            assert roc[b, j] == pytest.approx(roc_auc_score(y[b], scores[b, :, j]), abs=1e-12)
            assert pr[b, j] == pytest.approx(
                average_precision_score(y[b], scores[b, :, j]), abs=1e-12)


def test_batch_statistics_nan_for_one_class() -> None:
    y = np.zeros((1, 5), dtype=np.int64)
    roc, pr = metrics.batch_auroc_auprc(y, np.random.default_rng(0).random((1, 5, 2)))
    assert np.isnan(roc).all() and np.isnan(pr).all()


def _toy(n_exams: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(2 * n_exams) < 0.3).astype(np.int64)
    s = np.column_stack([y * 0.3 + rng.random(2 * n_exams), rng.random(2 * n_exams)])
    groups = np.repeat([f"e{i}" for i in range(n_exams)], 2)
    return y, s, groups


def test_bootstrap_reproducible_for_a_seed() -> None:
    y, s, g = _toy()
    a = metrics.bootstrap(y, s, g, n_resamples=50, seed=7)
    b = metrics.bootstrap(y, s, g, n_resamples=50, seed=7)
    c = metrics.bootstrap(y, s, g, n_resamples=50, seed=8)
    np.testing.assert_array_equal(a.auroc, b.auroc)
    np.testing.assert_array_equal(a.auprc, b.auprc)
    assert not np.array_equal(a.auroc, c.auroc)


def test_resamples_keep_both_breasts_of_an_exam_together() -> None:
    groups = np.repeat(np.arange(10), 2)
    rows = next(metrics._resample_rows(groups, 20, seed=0, chunk=20))
    assert rows.shape == (20, 20)
    pairs = rows.reshape(20, 10, 2)
    np.testing.assert_array_equal(groups[pairs[..., 0]], groups[pairs[..., 1]])
    assert (pairs[..., 0] != pairs[..., 1]).all()


def test_one_class_resamples_are_dropped_and_counted() -> None:
    # one malignant breast among 5 exams: many resamples miss it and have no AUC
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    s = np.linspace(1, 0, 10)
    draws = metrics.bootstrap(y, s, np.repeat(np.arange(5), 2), n_resamples=200, seed=0)
    assert draws.skipped > 0
    assert len(draws.auroc) + draws.skipped == 200
    assert not np.isnan(draws.auroc).any()


def test_ci_contains_point_estimate() -> None:
    y, s, g = _toy(200)
    draws = metrics.bootstrap(y, s, g, n_resamples=300, seed=0)
    for j in range(2):
        e = metrics.estimate(metrics.auroc(y, s[:, j]), draws.auroc[:, j])
        assert e.ci_low is not None and e.ci_high is not None
        assert e.ci_low <= e.estimate <= e.ci_high
        e = metrics.estimate(metrics.auprc(y, s[:, j]), draws.auprc[:, j])
        assert e.ci_low is not None and e.ci_high is not None
        assert e.ci_low <= e.estimate <= e.ci_high


def test_no_draws_no_ci() -> None:
    e = metrics.estimate(0.7, np.empty(0))
    assert e.ci_low is None and e.ci_high is None


def test_point_estimates_need_both_classes() -> None:
    with pytest.raises(InputError, match="one class"):
        metrics.auroc(np.zeros(4, dtype=np.int64), np.arange(4.0))


def test_threshold_stats_counts() -> None:
    y = np.array([1, 1, 0, 0, 0])
    s = np.array([0.9, 0.4, 0.6, 0.1, 0.5])
    t = metrics.threshold_stats(y, s, 0.5)  # positive when score >= 0.5
    assert (t.tp, t.fn, t.tn, t.fp) == (1, 1, 1, 2)
    assert t.sensitivity == 0.5 and t.specificity == pytest.approx(1 / 3)
