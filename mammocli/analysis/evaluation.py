"""`evaluate`: model predictions against labels, at breast and exam level, with subgroups.

Exam level: an exam's score is the higher of its two breasts' scores and its label is 1 when
either breast is labelled 1 (a recall decision is made per exam).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError, InputError
from ..vocabulary import SCHEMA_VERSION
from . import metrics
from .metrics import Estimate, ThresholdStats
from .predictions import ModelScores
from .tables import BreastKey, Labels


class LevelMetrics(BaseModel):
    model_config = ConfigDict(frozen=True)

    n: int
    n_positive: int
    auroc: Estimate
    auprc: Estimate
    resamples_skipped: int
    thresholds: list[ThresholdStats]


class SubgroupRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    column: str
    value: str
    n_breasts: int
    n_positive: int
    auroc: Estimate | None  # None when the subgroup holds one class only
    auprc: Estimate | None
    note: str | None = None


class EvaluationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: str = SCHEMA_VERSION
    kind: str = "evaluate"
    model_source: str
    n_bootstrap: int
    seed: int
    ci_level: float
    unlabelled_prediction_exams: list[str]  # predicted, but not in the labels
    labelled_exams_without_predictions: list[str]
    failed_predictions: list[str]
    warnings: list[str]
    breast_level: dict[str, LevelMetrics]  # "malignant", and "benign" when both sides have it
    exam_level: dict[str, LevelMetrics]
    subgroups: list[SubgroupRow]


@dataclass(frozen=True)
class Subgroup:
    """`--by column` or `--by column:40,50,60` (numeric values cut at those edges)."""

    column: str
    edges: tuple[float, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Subgroup:
        column, _, edges = spec.partition(":")
        try:
            cuts = tuple(sorted(float(e) for e in edges.split(","))) if edges else ()
        except ValueError:
            raise ConfigError(f"--by {spec!r}: bin edges must be numbers, e.g. age:40,50,60,70")\
                from None
        if not column:
            raise ConfigError(f"--by {spec!r}: name a column")
        return cls(column, cuts)

    def value(self, raw: str, exam: str) -> str:
        if not raw:
            return "missing"
        if not self.edges:
            return raw
        try:
            x = float(raw)
        except ValueError:
            raise InputError(f"labels, exam {exam!r}: {self.column} = {raw!r} is not a number",
                             hint="binning needs numbers") from None
        if math.isnan(x):
            return "missing"
        if x < self.edges[0]:
            return f"<{self.edges[0]:g}"
        for low, high in zip(self.edges, self.edges[1:], strict=False):
            if x < high:
                return f"{low:g}-{high:g}"
        return f">={self.edges[-1]:g}"


@dataclass(frozen=True)
class Evaluated:
    """Matched arrays, kept for plots and exports."""

    keys: list[BreastKey]
    scores: dict[str, NDArray[np.float64]]  # "malignant"/"benign" -> per breast
    labels: dict[str, NDArray[np.int64]]
    report: EvaluationReport

    def exam_level(self, task: str) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        return _exam_level(self.keys, self.labels[task], self.scores[task])

    def curves(self) -> dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]]:
        """(labels, scores) per curve to plot: each task at breast level, then at exam level."""
        breast = {f"breast {t}": (self.labels[t], self.scores[t]) for t in self.scores}
        return {**breast, **{f"exam {t}": self.exam_level(t) for t in self.scores}}


def _exam_level(keys: list[BreastKey], y: NDArray[np.int64], s: NDArray[np.float64]
                ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    exams = sorted({k[0] for k in keys})
    index = {e: i for i, e in enumerate(exams)}
    ye = np.zeros(len(exams), dtype=np.int64)
    se = np.full(len(exams), -np.inf)
    for k, yi, si in zip(keys, y, s, strict=True):
        i = index[k[0]]
        ye[i] = max(ye[i], yi)
        se[i] = max(se[i], si)
    return ye, se


def _level(y: NDArray[np.int64], s: NDArray[np.float64], groups: list[str],
           thresholds: list[float], n_bootstrap: int, seed: int, level: float,
           what: str, warnings: list[str]) -> LevelMetrics:
    draws = metrics.bootstrap(y, s, groups, n_bootstrap, seed) if n_bootstrap > 0 else None
    warning = metrics.ci_size_warning(what, y, groups, draws.skipped if draws else 0,
                                      n_bootstrap, level)
    if warning is not None:
        warnings.append(warning)
    return LevelMetrics(
        n=len(y), n_positive=int(y.sum()),
        auroc=metrics.estimate(metrics.auroc(y, s, what), draws.auroc[:, 0] if draws else None,
                               level),
        auprc=metrics.estimate(metrics.auprc(y, s, what), draws.auprc[:, 0] if draws else None,
                               level),
        resamples_skipped=draws.skipped if draws else 0,
        thresholds=[metrics.threshold_stats(y, s, t) for t in thresholds],
    )


def evaluate(preds: ModelScores, labels: Labels, thresholds: list[float] | None = None,
             by: list[Subgroup] | None = None, n_bootstrap: int = metrics.DEFAULT_RESAMPLES,
             seed: int = 0, level: float = metrics.DEFAULT_CI_LEVEL) -> Evaluated:
    thresholds = thresholds if thresholds is not None else [0.5]
    for cut in thresholds:
        if not 0.0 <= cut <= 1.0:
            raise ConfigError(f"--threshold {cut:g} is outside 0-1")
    pred_exams = {k[0] for k in preds.malignant}
    label_exams = {k[0] for k in labels.malignant}
    common = pred_exams & label_exams
    if not common:
        raise InputError("no exam id of the predictions is in the labels",
                         hint="check --exam-column and that both use the same exam ids")
    keys = sorted(k for k in labels.malignant if k[0] in common)
    scores = {"malignant": np.array([preds.malignant[k] for k in keys])}
    ys = {"malignant": np.array([labels.malignant[k] for k in keys], dtype=np.int64)}
    if preds.benign is not None and labels.benign is not None:
        scores["benign"] = np.array([preds.benign[k] for k in keys])
        ys["benign"] = np.array([labels.benign[k] for k in keys], dtype=np.int64)
    exams = [k[0] for k in keys]
    warnings = list(preds.warnings)  # and one per level or subgroup too small for its CIs
    breast = {t: _level(ys[t], scores[t], exams, thresholds, n_bootstrap, seed, level,
                        f"breast-level {t} labels", warnings) for t in scores}
    exam: dict[str, LevelMetrics] = {}
    for t in scores:
        ye, se = _exam_level(keys, ys[t], scores[t])
        exam[t] = _level(ye, se, sorted(common), thresholds, n_bootstrap, seed, level,
                         f"exam-level {t} labels", warnings)
    rows: list[SubgroupRow] = []
    for group in by or []:
        if not any(group.column in a for a in labels.attributes.values()):
            raise ConfigError(f"--by {group.column}: no such column in the labels file")
        values = [group.value(labels.attributes[k].get(group.column, ""), k[0]) for k in keys]
        for value in sorted(set(values)):
            idx = np.array([i for i, v in enumerate(values) if v == value])
            rows.append(_subgroup(group.column, value, idx, keys, ys["malignant"],
                                  scores["malignant"], n_bootstrap, seed, level, warnings))
    report = EvaluationReport(
        model_source=preds.source, n_bootstrap=n_bootstrap, seed=seed, ci_level=level,
        unlabelled_prediction_exams=sorted(pred_exams - common),
        labelled_exams_without_predictions=sorted(label_exams - common),
        failed_predictions=preds.failed, warnings=warnings,
        breast_level=breast, exam_level=exam, subgroups=rows,
    )
    return Evaluated(keys, scores, ys, report)


def _subgroup(column: str, value: str, idx: NDArray[np.intp], keys: list[BreastKey],
              y: NDArray[np.int64], s: NDArray[np.float64], n_bootstrap: int, seed: int,
              level: float, warnings: list[str]) -> SubgroupRow:
    ys, ss = y[idx], s[idx]
    n_pos = int(ys.sum())
    if n_pos in (0, len(idx)):
        return SubgroupRow(column=column, value=value, n_breasts=len(idx), n_positive=n_pos,
                           auroc=None, auprc=None, note="one class only: no AUC")
    groups = [keys[i][0] for i in idx]
    # a subgroup by a per-breast column may hold one breast of an exam: resample breasts then
    sizes = {g: groups.count(g) for g in groups}
    if len(set(sizes.values())) > 1:
        groups = [f"{keys[i][0]}/{keys[i][1]}" for i in idx]
    draws = metrics.bootstrap(ys, ss, groups, n_bootstrap, seed) if n_bootstrap > 0 else None
    warning = metrics.ci_size_warning(f"subgroup {column}={value}", ys, groups,
                                      draws.skipped if draws else 0, n_bootstrap, level)
    if warning is not None:
        warnings.append(warning)
    return SubgroupRow(
        column=column, value=value, n_breasts=len(idx), n_positive=n_pos,
        auroc=metrics.estimate(metrics.auroc(ys, ss), draws.auroc[:, 0] if draws else None, level),
        auprc=metrics.estimate(metrics.auprc(ys, ss), draws.auprc[:, 0] if draws else None, level),
    )


def metarepo_breast_csv(ev: Evaluated) -> str:
    """The metarepository's breast-level predictions: `index,left_malignant,right_malignant`."""
    by_exam: dict[str, dict[str, float]] = {}
    for k, v in zip(ev.keys, ev.scores["malignant"], strict=True):
        by_exam.setdefault(k[0], {})[k[1]] = float(v)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "left_malignant", "right_malignant"])
    for exam, sides in by_exam.items():
        w.writerow([exam, f"{sides['L']:.6g}", f"{sides['R']:.6g}"])
    return buf.getvalue()


def report_csv(r: EvaluationReport) -> str:
    """The report's metrics as a CSV table, one row per (level, task, metric)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["level", "task", "n", "n_positive", "metric", "estimate", "ci_low", "ci_high"])
    for level, block in (("breast", r.breast_level), ("exam", r.exam_level)):
        for task, m in block.items():
            for name, est in (("auroc", m.auroc), ("auprc", m.auprc)):
                w.writerow([level, task, m.n, m.n_positive, name, est.estimate, est.ci_low,
                            est.ci_high])
    for s in r.subgroups:
        for name, e in (("auroc", s.auroc), ("auprc", s.auprc)):
            w.writerow([f"{s.column}={s.value}", "malignant", s.n_breasts, s.n_positive, name,
                        *((e.estimate, e.ci_low, e.ci_high) if e else ("", "", ""))])
    return buf.getvalue()
