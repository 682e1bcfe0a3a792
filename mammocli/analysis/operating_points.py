"""Operating points: the threshold that meets a target, and what it achieves, with CIs.

A case (exam or breast) is flagged when its score >= the threshold. Targets:
- `specificity t`: the lowest threshold whose specificity is at least t (the most sensitive one);
- `sensitivity t`: the highest threshold whose sensitivity is at least t (the most specific one);
- `recall_rate r`: the lowest threshold that flags at most a fraction r of the cases (a recall
  budget; at exam level, the share of exams recalled).
Thresholds are observed scores (ties flag together); when no score meets the target the
threshold sits just above the highest score and flags nothing.

The CIs include the threshold's own uncertainty: each bootstrap resample (of exams, both breasts
together) chooses its own threshold by the same rule, then measures sensitivity, specificity,
PPV and recall rate on itself. Resamples with one class only are dropped and counted.

`at_threshold` measures a threshold chosen elsewhere (a site file's) on other labels: there the
threshold is fixed in every resample, so the CIs are those of the new labels only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError, InputError
from . import metrics
from .evaluation import _exam_level
from .metrics import Estimate

TargetKind = Literal["specificity", "sensitivity", "recall_rate"]
Level = Literal["exam", "breast"]
LEVELS: tuple[Level, ...] = ("exam", "breast")
_TOL = 1e-9  # counts from fractions: (1 - 0.9) * 660 is 65.999...

FloatArray = NDArray[np.float64]


class Target(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: TargetKind
    value: float

    @property
    def name(self) -> str:
        return f"{self.kind} {self.value:g}"

    def check(self) -> Target:
        if not 0.0 <= self.value <= 1.0:
            option = "--recall-rate" if self.kind == "recall_rate" else f"--target-{self.kind}"
            raise ConfigError(f"{option} {self.value:g} is outside 0-1",
                              hint="give a fraction, e.g. 0.9")
        return self


class OperatingPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str  # e.g. "exam specificity 0.9"
    level: Level
    target: Target
    threshold: Estimate  # on the raw score; CI from the re-chosen thresholds
    calibrated_threshold: float | None = None  # the same threshold as a calibrated probability
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate | None  # None when nothing is flagged
    recall_rate: Estimate
    n: int
    n_positive: int
    tp: int
    fp: int
    tn: int
    fn: int
    resamples_skipped: int


@dataclass(frozen=True)
class _Chosen:
    """Per row of a (C, n) batch: the threshold and the counts it gives."""

    threshold: FloatArray
    tp: FloatArray
    fp: FloatArray
    n1: FloatArray
    n0: FloatArray


def _choose(y: NDArray[np.integer], s: FloatArray, target: Target) -> _Chosen:
    c, n = s.shape
    order = np.argsort(-s, axis=1, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=1)
    y_sorted = np.take_along_axis(y, order, axis=1).astype(np.float64)
    tp = np.cumsum(y_sorted, axis=1)
    flagged = np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), (c, n))
    fp = flagged - tp
    n1 = tp[:, -1]
    n0 = n - n1
    # a cut is possible only after the last of a block of tied scores
    block_end = np.concatenate([s_sorted[:, :-1] != s_sorted[:, 1:], np.ones((c, 1), bool)],
                               axis=1)
    positions = np.broadcast_to(np.arange(n), (c, n))
    t = target.value
    if target.kind == "specificity":
        ok = block_end & (fp <= (1.0 - t) * n0[:, None] + _TOL)
        last = np.where(ok, positions, -1).max(axis=1)  # fp grows along: ok is a prefix
    elif target.kind == "recall_rate":
        ok = block_end & (flagged <= t * n + _TOL)
        last = np.where(ok, positions, -1).max(axis=1)
    else:
        ok = block_end & (tp >= t * n1[:, None] - _TOL)
        last = np.where(ok, positions, n - 1).min(axis=1)  # the last position always qualifies
    rows = np.arange(c)
    at = np.maximum(last, 0)
    none = last < 0  # flag nothing: just above the highest score
    threshold = np.where(none, np.nextafter(s_sorted[:, 0], np.inf), s_sorted[rows, at])
    return _Chosen(threshold=threshold, tp=np.where(none, 0.0, tp[rows, at]),
                   fp=np.where(none, 0.0, fp[rows, at]), n1=n1, n0=n0)


def _rates(ch: _Chosen, n: int) -> dict[str, FloatArray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "threshold": ch.threshold,
            "sensitivity": ch.tp / ch.n1,
            "specificity": 1.0 - ch.fp / ch.n0,
            "ppv": ch.tp / (ch.tp + ch.fp),
            "recall_rate": (ch.tp + ch.fp) / n,
        }


def operating_point(y: NDArray[np.integer], scores: FloatArray, groups: list[str],
                    target: Target, level: Level, n_bootstrap: int = metrics.DEFAULT_RESAMPLES,
                    seed: int = 0, ci_level: float = metrics.DEFAULT_CI_LEVEL) -> OperatingPoint:
    """The operating point for `target` on per-case labels and scores; `groups` holds the exam
    of each case (the resampling unit)."""
    target.check()
    return _measure(y, scores, groups, lambda ys, ss: _choose(ys, ss, target), target, level,
                    n_bootstrap, seed, ci_level)


def at_threshold(y: NDArray[np.integer], scores: FloatArray, groups: list[str],
                 threshold: float, target: Target, level: Level,
                 n_bootstrap: int = metrics.DEFAULT_RESAMPLES, seed: int = 0,
                 ci_level: float = metrics.DEFAULT_CI_LEVEL) -> OperatingPoint:
    """A stored operating point (a site file's `threshold`, chosen for `target` elsewhere)
    measured on these cases. The threshold stays fixed in every resample (it is given, not
    chosen here), so the CIs are those of these labels and the threshold has none."""
    def fixed(ys: NDArray[np.integer], ss: FloatArray) -> _Chosen:
        flagged = ss >= threshold
        tp = (flagged & (ys == 1)).sum(axis=1).astype(np.float64)
        n1 = ys.sum(axis=1).astype(np.float64)
        return _Chosen(threshold=np.full(len(ys), threshold), tp=tp,
                       fp=flagged.sum(axis=1) - tp, n1=n1, n0=ys.shape[1] - n1)

    return _measure(y, scores, groups, fixed, target, level, n_bootstrap, seed, ci_level,
                    fixed_threshold=True)


def _measure(y: NDArray[np.integer], scores: FloatArray, groups: list[str],
             choose: Callable[[NDArray[np.integer], FloatArray], _Chosen], target: Target,
             level: Level, n_bootstrap: int, seed: int, ci_level: float,
             fixed_threshold: bool = False) -> OperatingPoint:
    """Apply `choose` (a batch rule: threshold and counts per row) to the cases and to each
    resample of exams; estimates with percentile CIs."""
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    n = len(y)
    n_pos = int(y.sum())
    if n_pos in (0, n):
        raise InputError(f"{level}-level labels hold one class only ({n_pos} positive of {n})",
                         hint="an operating point needs malignant and non-malignant cases")
    point = choose(y[None, :], s[None, :])
    rates = {k: float(v[0]) for k, v in _rates(point, n).items()}
    draws: dict[str, FloatArray] | None = None
    skipped = 0
    if n_bootstrap > 0:
        group_ids = np.unique(np.asarray(groups), return_inverse=True)[1].astype(np.int64)
        chunk = max(1, 2_000_000 // n)
        parts: list[dict[str, FloatArray]] = []
        for rows in metrics._resample_rows(group_ids, n_bootstrap, seed, chunk):
            ch = choose(y[rows], s[rows])
            valid = (ch.n1 > 0) & (ch.n0 > 0)
            skipped += int((~valid).sum())
            parts.append({k: v[valid] for k, v in _rates(ch, n).items()})
        draws = {k: np.concatenate([p[k] for p in parts]) for k in rates}

    def est(name: str) -> Estimate:
        if draws is None or (fixed_threshold and name == "threshold"):
            return Estimate(estimate=rates[name])
        d = draws[name]
        return metrics.estimate(rates[name], d[~np.isnan(d)], ci_level)  # PPV: none flagged

    tp, fp = int(point.tp[0]), int(point.fp[0])
    return OperatingPoint(
        name=f"{level} {target.name}", level=level, target=target, threshold=est("threshold"),
        sensitivity=est("sensitivity"), specificity=est("specificity"),
        ppv=None if tp + fp == 0 else est("ppv"), recall_rate=est("recall_rate"),
        n=n, n_positive=n_pos, tp=tp, fp=fp, tn=n - n_pos - fp, fn=n_pos - tp,
        resamples_skipped=skipped,
    )


def exam_level(keys: list[tuple[str, str]], y: NDArray[np.integer], s: FloatArray
               ) -> tuple[list[str], NDArray[np.int64], FloatArray]:
    """Per exam (sorted): label 1 when either breast is malignant, score the higher of the two."""
    ye, se = _exam_level(keys, np.asarray(y, dtype=np.int64), np.asarray(s, dtype=np.float64))
    return sorted({k[0] for k in keys}), ye, se


def operating_points(keys: list[tuple[str, str]], y: NDArray[np.integer], s: FloatArray,
                     targets: list[Target], levels: tuple[Level, ...] = LEVELS,
                     n_bootstrap: int = metrics.DEFAULT_RESAMPLES, seed: int = 0,
                     ci_level: float = metrics.DEFAULT_CI_LEVEL) -> list[OperatingPoint]:
    """Each target at each level, from per-breast keys (exam, side), labels and scores."""
    exams, ye, se = exam_level(keys, y, s)
    data = {"exam": (ye, se, exams), "breast": (np.asarray(y), np.asarray(s),
                                                [k[0] for k in keys])}
    return [operating_point(data[lv][0], data[lv][1], data[lv][2], t, lv, n_bootstrap, seed,
                            ci_level)
            for t in targets for lv in levels]
