"""Classification metrics with exam-level bootstrap confidence intervals.

Point estimates come from scikit-learn (`roc_auc_score`, `average_precision_score`). The bootstrap
needs thousands of curves (2,000 resamples x ~30 score columns for a 14-reader study), which
scikit-learn's per-call validation makes take over a minute; so resamples use vectorised forms of
the same two statistics from one sort (Mann-Whitney U, and average precision over distinct
thresholds exactly as scikit-learn defines it). tests/test_metrics.py checks both against
scikit-learn, ties included.

Resampling draws *exams* (groups) with replacement, so both breasts of an exam stay together.
A resample that holds one class only has no AUC: it is dropped and counted (`resamples_skipped`),
and the CI comes from the remaining resamples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from ..errors import InputError

DEFAULT_RESAMPLES = 2000
DEFAULT_CI_LEVEL = 0.95
_CHUNK_ELEMENTS = 4_000_000  # resamples x rows x columns per vectorised chunk (~32 MB of float64)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class Estimate(BaseModel):
    """A point estimate with its percentile bootstrap CI (None when not bootstrapped)."""

    model_config = ConfigDict(frozen=True)

    estimate: float
    ci_low: float | None = None
    ci_high: float | None = None


class ThresholdStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    threshold: float
    sensitivity: float | None
    specificity: float | None
    tp: int
    fn: int
    tn: int
    fp: int


def _check_binary(y: NDArray[np.integer], what: str) -> None:
    n_pos = int(np.sum(y == 1))
    if n_pos == 0 or n_pos == len(y):
        raise InputError(
            f"{what}: the labels hold one class only ({n_pos} positive of {len(y)}); "
            "AUROC/AUPRC need both",
            hint="check the label column and that the predictions matched the labelled exams",
        )


def auroc(y: NDArray[np.integer], scores: FloatArray, what: str = "labels") -> float:
    _check_binary(y, what)
    return float(roc_auc_score(y, scores))


def auprc(y: NDArray[np.integer], scores: FloatArray, what: str = "labels") -> float:
    _check_binary(y, what)
    return float(average_precision_score(y, scores))


def threshold_stats(y: NDArray[np.integer], scores: FloatArray, threshold: float) -> ThresholdStats:
    """Sensitivity and specificity calling a case positive when score >= threshold."""
    tn, fp, fn, tp = confusion_matrix(y, scores >= threshold, labels=[0, 1]).ravel()
    return ThresholdStats(
        threshold=threshold,
        sensitivity=float(tp / (tp + fn)) if tp + fn else None,
        specificity=float(tn / (tn + fp)) if tn + fp else None,
        tp=int(tp), fn=int(fn), tn=int(tn), fp=int(fp),
    )


# --- vectorised statistics for bootstrap resamples -------------------------------------------


def batch_auroc_auprc(y: NDArray[np.integer], scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """AUROC and average precision per resample and column, from one sort.

    y: (B, n) labels, scores: (B, n, k) -> two (B, k) arrays; NaN where a resample has one class.
    Scores are sorted descending and cut into blocks of tied scores (one threshold per block).
    - AUROC (Mann-Whitney, equal to scikit-learn's trapezoidal area, ties included): each positive
      beats the negatives below its block and half-beats the negatives tied in its block.
    - AP = sum over thresholds of (R_t - R_{t-1}) P_t (scikit-learn's definition): each positive
      adds 1/n1 of recall at the end of its block, so AP = mean over positives of the precision
      at the end of their block.
    """
    b, n, k = scores.shape
    s = np.ascontiguousarray(np.moveaxis(scores, 1, 2))  # (B, k, n): sort along the last axis
    order = np.argsort(-s, axis=2, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=2)
    y_sorted = np.take_along_axis(np.broadcast_to(y[:, None, :], (b, k, n)), order, axis=2)
    y_sorted = y_sorted.astype(np.float64)
    tp = np.cumsum(y_sorted, axis=2)
    fp = np.arange(1, n + 1)[None, None, :] - tp
    ties_next = s_sorted[:, :, :-1] == s_sorted[:, :, 1:]
    positions = np.broadcast_to(np.arange(n)[None, None, :], (b, k, n))
    # end (last index) and start (first index) of each element's tie block
    end = np.where(np.concatenate([~ties_next, np.ones((b, k, 1), bool)], axis=2), positions, n)
    end = np.minimum.accumulate(end[:, :, ::-1], axis=2)[:, :, ::-1]
    start = np.where(np.concatenate([np.ones((b, k, 1), bool), ~ties_next], axis=2), positions, 0)
    start = np.maximum.accumulate(start, axis=2)
    fp_end = np.take_along_axis(fp, end, axis=2)
    fp_before = np.where(start > 0, np.take_along_axis(fp, np.maximum(start - 1, 0), axis=2), 0)
    tp_end = np.take_along_axis(tp, end, axis=2)
    n1 = y.sum(axis=1).astype(np.float64)
    n0 = n - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        wins = (n0[:, None, None] - fp_end) + 0.5 * (fp_end - fp_before)
        auroc = (y_sorted * wins).sum(axis=2) / (n1 * n0)[:, None]
        auprc = (y_sorted * (tp_end / (end + 1))).sum(axis=2) / n1[:, None]
    one_class = (n1 == 0) | (n0 == 0)
    auroc[one_class] = np.nan
    auprc[one_class] = np.nan
    return auroc, auprc


# --- exam-level bootstrap -------------------------------------------------------------------


def _resample_rows(groups: IntArray, n_resamples: int, seed: int,
                   chunk: int) -> Iterator[IntArray]:
    """Row indices of each resample, in chunks of (C, n_rows). Draws groups with replacement.

    Every group must have the same size (two breasts per exam, or one exam per group), so each
    resample has as many rows as the data and chunks stack into one array.
    """
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if np.any(counts != counts[0]):
        raise ValueError("bootstrap groups must all have the same size")
    members = np.argsort(inverse, kind="stable").reshape(len(counts), int(counts[0]))
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_resamples:
        c = min(chunk, n_resamples - done)
        picks = rng.integers(0, len(counts), size=(c, len(counts)))
        yield members[picks].reshape(c, -1)
        done += c


@dataclass(frozen=True)
class BootstrapDraws:
    """Per-resample statistics: arrays (B_valid, k), one-class resamples already dropped."""

    auroc: FloatArray
    auprc: FloatArray
    n_resamples: int
    skipped: int


def bootstrap(y: NDArray[np.integer], scores: FloatArray,
              groups: Sequence[object] | NDArray[Any],
              n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> BootstrapDraws:
    """AUROC and AUPRC of each score column over `n_resamples` exam-level resamples.

    y: (n,) 0/1 labels; scores: (n, k); groups: (n,) exam of each row. Same seed, same draws.
    """
    y = np.asarray(y)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    group_ids = np.unique(np.asarray(groups), return_inverse=True)[1].astype(np.int64)
    n, k = scores.shape
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n * k))
    aurocs: list[FloatArray] = []
    auprcs: list[FloatArray] = []
    for rows in _resample_rows(group_ids, n_resamples, seed, chunk):
        ys, ss = y[rows], scores[rows]
        roc, pr = batch_auroc_auprc(ys, ss)
        aurocs.append(roc)
        auprcs.append(pr)
    all_roc = np.concatenate(aurocs) if aurocs else np.empty((0, k))
    all_pr = np.concatenate(auprcs) if auprcs else np.empty((0, k))
    valid = ~np.isnan(all_roc).any(axis=1)  # NaN only where a resample has one class
    return BootstrapDraws(auroc=all_roc[valid], auprc=all_pr[valid], n_resamples=n_resamples,
                          skipped=int((~valid).sum()))


# Fewer exams of a class than this and a bootstrap CI means little (with 10 positive exams a
# resample misses them all with probability ~ e^-10: practically no resamples skipped).
MIN_EXAMS_PER_CLASS = 10


def ci_size_warning(what: str, y: NDArray[np.integer], groups: Sequence[object] | NDArray[Any],
                    skipped: int, n_resamples: int, level: float = DEFAULT_CI_LEVEL
                    ) -> str | None:
    """A warning when the set is too small for its bootstrap CIs (None when it is not, or when
    no CIs were computed). `groups`: the exam of each row, as given to `bootstrap`."""
    if n_resamples <= 0:
        return None
    y = np.asarray(y)
    exams = np.asarray(groups)
    positive = len(np.unique(exams[y == 1]))
    negative = len(np.unique(exams[y == 0]))
    if skipped == 0 and min(positive, negative) >= MIN_EXAMS_PER_CLASS:
        return None
    return (f"{what}: too few exams for the {level:.0%} CIs ({positive} with a positive and "
            f"{negative} with a negative label; {skipped} of {n_resamples} resamples held one "
            f"class only and were skipped); CIs need at least {MIN_EXAMS_PER_CLASS} exams of "
            "each class")


def percentile_ci(draws: FloatArray, level: float = DEFAULT_CI_LEVEL
                  ) -> tuple[float | None, float | None]:
    """Percentile interval of 1-D draws; (None, None) when there are none."""
    if draws.size == 0:
        return None, None
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return float(low), float(high)


def estimate(point: float, draws: FloatArray | None,
             level: float = DEFAULT_CI_LEVEL) -> Estimate:
    if draws is None:
        return Estimate(estimate=point)
    low, high = percentile_ci(draws, level)
    return Estimate(estimate=point, ci_low=low, ci_high=high)
