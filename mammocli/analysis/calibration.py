"""Calibration of the model's probabilities on a local labelled set, and how well it holds.

Two fits, both scikit-learn, both stored as plain numbers (a site file never holds a pickle, so a
new scikit-learn cannot break it):
- `logistic` (Platt scaling on the logit): p' = sigmoid(slope * logit(p) + intercept). When the
  model's scores are a known distortion of calibrated ones, s = sigmoid(a * z + b), the fit
  inverts it: slope = 1/a, intercept = -b/a (`LogisticFit.distortion` gives a and b back);
- `isotonic`: a non-decreasing step-and-ramp function, applied by linear interpolation between
  its knots (what `IsotonicRegression.predict` does), clipped outside them.

Quality: Brier score and expected calibration error (ECE, 10 equal-width bins of the predicted
probability), each with a percentile bootstrap CI over exams, before and after. The "after"
figures come from cross-validation (each exam calibrated by a fit that did not see it), so they
are an honest estimate for new exams of the same site.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import binomtest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import ConfigError, InputError
from . import metrics
from .metrics import Estimate

Method = Literal["logistic", "isotonic"]
METHODS: tuple[Method, ...] = ("logistic", "isotonic")
DEFAULT_BINS = 10
DEFAULT_FOLDS = 5
_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before the logit (0 and 1 occur)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def logit(p: FloatArray) -> FloatArray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.asarray(np.log(q) - np.log1p(-q))


def sigmoid(x: FloatArray) -> FloatArray:
    # exp of -|x| only: a steep fit (near-constant scores) must not overflow and warn.
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.asarray(np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)))


class LogisticFit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["logistic"] = "logistic"
    slope: float
    intercept: float

    def apply(self, p: FloatArray) -> FloatArray:
        return sigmoid(self.slope * logit(p) + self.intercept)

    @property
    def distortion(self) -> tuple[float, float]:
        """(a, b) of the miscalibration this fit undoes: scores = sigmoid(a * true logit + b)."""
        return 1.0 / self.slope, -self.intercept / self.slope


class IsotonicFit(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["isotonic"] = "isotonic"
    x: list[float]  # knots: raw probabilities, increasing
    y: list[float]  # calibrated probability at each knot, non-decreasing

    def apply(self, p: FloatArray) -> FloatArray:
        return np.interp(np.asarray(p, dtype=np.float64), self.x, self.y)


Fit = Annotated[LogisticFit | IsotonicFit, Field(discriminator="method")]


def _check_fit_data(y: IntArray, p: FloatArray) -> None:
    n_pos = int(np.sum(y == 1))
    if n_pos == 0 or n_pos == len(y):
        raise InputError(
            f"calibration: the labels hold one class only ({n_pos} positive of {len(y)})",
            hint="a calibration needs malignant and non-malignant breasts in the labelled set")


def fit(y: IntArray, p: FloatArray, method: Method = "logistic") -> LogisticFit | IsotonicFit:
    """Fit a calibration of probabilities `p` to 0/1 labels `y` (per breast)."""
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    _check_fit_data(y, p)
    if method == "logistic":
        # C=inf: no penalty, the maximum-likelihood Platt fit
        lr = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000)
        lr.fit(logit(p)[:, None], y)
        return LogisticFit(slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(p, y)
        return IsotonicFit(x=[float(v) for v in iso.X_thresholds_],
                           y=[float(v) for v in iso.y_thresholds_])
    raise ConfigError(f"--method {method!r}: choose one of {', '.join(METHODS)}")


def cross_validated(y: IntArray, p: FloatArray, groups: list[str], method: Method,
                    folds: int = DEFAULT_FOLDS, seed: int = 0) -> FloatArray:
    """Out-of-fold calibrated probabilities: each exam's breasts by a fit without that exam."""
    y = np.asarray(y, dtype=np.int64)
    n_exams = len(set(groups))
    if folds < 2 or folds > n_exams:
        raise ConfigError(f"--folds {folds}: needs 2 to {n_exams} (the number of exams)")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = np.empty(len(y), dtype=np.float64)
    with warnings.catch_warnings():
        # "the least populated class has fewer members than n_splits": fine, and the library
        # stays silent; a fold left with one class is the error below
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(np.zeros(len(y)), y, groups))
    for train, test in splits:
        if len(set(y[train].tolist())) < 2:
            raise ConfigError(
                f"--folds {folds}: a fold leaves no malignant (or no other) breast to fit on",
                hint="use fewer folds, or label more exams")
        out[test] = fit(y[train], p[train], method).apply(p[test])
    return out


# --- quality ---------------------------------------------------------------------------------


def brier(y: IntArray, p: FloatArray) -> float:
    return float(np.mean((np.asarray(p) - np.asarray(y)) ** 2))


def _bins(p: FloatArray, n_bins: int) -> IntArray:
    # equal-width bins over [0, 1]; 1.0 goes into the last bin
    return np.minimum((np.asarray(p) * n_bins).astype(np.int64), n_bins - 1)


def ece(y: IntArray, p: FloatArray, n_bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error: sum over bins of (share of cases) x |observed - predicted|."""
    return float(_batch_ece(np.asarray(y)[None, :], np.asarray(p, dtype=np.float64)[None, :],
                            n_bins)[0])


def _batch_ece(y: NDArray[np.integer], p: FloatArray, n_bins: int) -> FloatArray:
    """ECE of each row of (C, n) labels and probabilities."""
    c, n = p.shape
    flat = (_bins(p, n_bins) + n_bins * np.arange(c)[:, None]).ravel()
    size = c * n_bins
    sum_p = np.bincount(flat, weights=p.ravel(), minlength=size).reshape(c, n_bins)
    sum_y = np.bincount(flat, weights=y.ravel().astype(np.float64), minlength=size)
    return np.asarray(np.abs(sum_y.reshape(c, n_bins) - sum_p).sum(axis=1) / n)


class ReliabilityBin(BaseModel):
    """One bin of a reliability diagram; `observed_ci_*` is the Wilson 95% interval."""

    model_config = ConfigDict(frozen=True)

    low: float
    high: float
    n: int
    mean_predicted: float | None
    observed: float | None
    observed_ci_low: float | None
    observed_ci_high: float | None


def reliability(y: IntArray, p: FloatArray, n_bins: int = DEFAULT_BINS) -> list[ReliabilityBin]:
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    which = _bins(p, n_bins)
    out = []
    for b in range(n_bins):
        inside = which == b
        n = int(inside.sum())
        low, high = b / n_bins, (b + 1) / n_bins
        if n == 0:
            out.append(ReliabilityBin(low=low, high=high, n=0, mean_predicted=None, observed=None,
                                      observed_ci_low=None, observed_ci_high=None))
            continue
        k = int(y[inside].sum())
        ci = binomtest(k, n).proportion_ci(method="wilson")
        out.append(ReliabilityBin(low=low, high=high, n=n, mean_predicted=float(p[inside].mean()),
                                  observed=k / n, observed_ci_low=float(ci.low),
                                  observed_ci_high=float(ci.high)))
    return out


class CalibrationMetrics(BaseModel):
    model_config = ConfigDict(frozen=True)

    brier: Estimate
    ece: Estimate
    reliability: list[ReliabilityBin]


class CalibrationReport(BaseModel):
    """Before (raw) and after (calibrated) on the same breasts, with paired differences."""

    model_config = ConfigDict(frozen=True)

    method: str
    evaluated_on: str  # e.g. "5-fold cross-validation by exam"
    n_bins: int
    n_bootstrap: int
    seed: int
    ci_level: float
    before: CalibrationMetrics
    after: CalibrationMetrics
    brier_change: Estimate  # after - before; below 0 is better
    ece_change: Estimate


def assess(y: IntArray, raw: FloatArray, calibrated: FloatArray, groups: list[str],
           method: str, evaluated_on: str, n_bootstrap: int = metrics.DEFAULT_RESAMPLES,
           seed: int = 0, level: float = metrics.DEFAULT_CI_LEVEL,
           n_bins: int = DEFAULT_BINS) -> CalibrationReport:
    """Brier and ECE of `raw` and `calibrated` with exam-level bootstrap CIs (same resamples for
    both, so the change has its own paired CI)."""
    y = np.asarray(y, dtype=np.int64)
    both = np.stack([np.asarray(raw, np.float64), np.asarray(calibrated, np.float64)])
    points = np.array([[brier(y, s), ece(y, s, n_bins)] for s in both])  # (2, 2)
    draws: FloatArray | None = None
    if n_bootstrap > 0:
        group_ids = np.unique(np.asarray(groups), return_inverse=True)[1].astype(np.int64)
        chunk = max(1, 2_000_000 // max(1, len(y)))
        parts = []
        for rows in metrics._resample_rows(group_ids, n_resamples=n_bootstrap, seed=seed,
                                           chunk=chunk):
            ys = y[rows]
            per = [np.stack([np.mean((both[i][rows] - ys) ** 2, axis=1),
                             _batch_ece(ys, both[i][rows], n_bins)], axis=1) for i in range(2)]
            parts.append(np.stack(per, axis=1))  # (C, 2 [raw, calibrated], 2 [brier, ece])
        draws = np.concatenate(parts)

    def est(i: int, j: int) -> Estimate:
        return metrics.estimate(float(points[i, j]), None if draws is None else draws[:, i, j],
                                level)

    def change(j: int) -> Estimate:
        return metrics.estimate(float(points[1, j] - points[0, j]),
                                None if draws is None else draws[:, 1, j] - draws[:, 0, j], level)

    return CalibrationReport(
        method=method, evaluated_on=evaluated_on, n_bins=n_bins, n_bootstrap=n_bootstrap,
        seed=seed, ci_level=level,
        before=CalibrationMetrics(brier=est(0, 0), ece=est(0, 1),
                                  reliability=reliability(y, both[0], n_bins)),
        after=CalibrationMetrics(brier=est(1, 0), ece=est(1, 1),
                                 reliability=reliability(y, both[1], n_bins)),
        brier_change=change(0), ece_change=change(1),
    )
