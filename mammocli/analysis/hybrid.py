"""Radiologist + model hybrid (Wu et al. 2019): hybrid = w * reader + (1 - w) * model, per reader.

Reads radiologists' scores (long layout: exam, side, reader, score; wide layout: one column per
reader), matches them to the model's per-breast predictions, blends, and with labels reports
AUROC/AUPRC with exam-level bootstrap CIs. Unmatched exams are reported, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError, InputError
from ..vocabulary import SCHEMA_VERSION
from . import metrics
from .curves import ScoredCases, reader_points, roc_pr_pngs
from .metrics import Estimate
from .predictions import ModelScores
from .tables import (
    BreastKey,
    Columns,
    Labels,
    check_both_sides,
    check_probabilities,
    exam_column,
    exam_id,
    no_duplicate,
    parse_float,
    parse_label,
    parse_side,
    read_csv,
)

DEFAULT_WEIGHT = 0.5  # the paper's plain average


@dataclass(frozen=True)
class ReaderScores:
    keys: list[BreastKey]  # one per breast, sorted
    readers: list[str]
    scores: NDArray[np.float64]  # (breasts, readers), 0-1
    labels: dict[BreastKey, int] | None  # from a label column in the same file
    warnings: list[str] = field(default_factory=list)


def read_reader_scores(path: Path, columns: Columns) -> ReaderScores:
    """Wide layout when `columns.readers` is given, else long (exam, side, reader, score)."""
    table = read_csv(path)
    exam_col = exam_column(table, columns)
    table.require(exam_col, columns.side, option="--exam-column/--side-column")
    has_label = columns.label in table.header
    warnings: list[str] = []
    seen: dict[object, int] = {}
    labels: dict[BreastKey, int] = {}
    label_line: dict[BreastKey, int] = {}
    by_reader: dict[str, dict[BreastKey, tuple[int, float]]] = {}

    def note_label(key: BreastKey, row_line: int, value: int) -> None:
        if key in labels and labels[key] != value:
            raise InputError(f"{table.where(row_line)}: label {value} contradicts line "
                             f"{label_line[key]} for the same breast")
        labels[key], label_line[key] = value, row_line

    if columns.readers:
        reader_cols = table.expand(columns.readers)
        for row in table.rows:
            key = (exam_id(table, row, exam_col), parse_side(table, row, columns.side))
            no_duplicate(table, row, key, seen)
            for col in reader_cols:
                by_reader.setdefault(col, {})[key] = (row.line, parse_float(table, row, col))
            if has_label:
                note_label(key, row.line, parse_label(table, row, columns.label))
    else:
        if columns.reader not in table.header or columns.score not in table.header:
            raise ConfigError(
                f"{path.name}: no {columns.reader!r} and {columns.score!r} columns (long layout)",
                hint="name the reader columns of a wide table with --reader-columns "
                     "(e.g. 'Reader*_POM'), or the long layout's with --reader-column/"
                     f"--score-column; columns: {', '.join(table.header)}",
            )
        for row in table.rows:
            key = (exam_id(table, row, exam_col), parse_side(table, row, columns.side))
            reader = row.values[columns.reader]
            if not reader:
                raise InputError(f"{table.where(row.line)}: empty reader name")
            no_duplicate(table, row, (key, reader), seen)
            score = parse_float(table, row, columns.score)
            by_reader.setdefault(reader, {})[key] = (row.line, score)
            if has_label:
                note_label(key, row.line, parse_label(table, row, columns.label))

    if not by_reader:
        raise InputError(f"{path.name}: no scores")
    all_keys = sorted({k for scores in by_reader.values() for k in scores})
    check_both_sides(all_keys, path.name)
    matrix = np.empty((len(all_keys), len(by_reader)))
    for j, (reader, scores) in enumerate(by_reader.items()):
        missing = [k for k in all_keys if k not in scores]
        if missing:
            raise InputError(f"{path.name}: reader {reader!r} has no score for exam "
                             f"{missing[0][0]!r} side {missing[0][1]} ({len(missing)} breasts)",
                             hint="every reader must score every breast")
        values = check_probabilities(table, reader, [scores[k] for k in all_keys], True, warnings)
        matrix[:, j] = values
    return ReaderScores(all_keys, list(by_reader), matrix, labels if has_label else None, warnings)


@dataclass(frozen=True)
class Matched:
    """Breasts present in both the scores and the predictions, in the same order."""

    keys: list[BreastKey]
    readers: list[str]
    reader_scores: NDArray[np.float64]  # (n, readers)
    model: NDArray[np.float64]  # (n,)
    labels: NDArray[np.int64] | None  # (n,)
    scores_only: list[str]  # exam ids without predictions
    predictions_only: list[str]  # exam ids without reader scores

    @property
    def exams(self) -> list[str]:
        return [k[0] for k in self.keys]


def match(scores: ReaderScores, model: ModelScores, labels: Labels | None = None) -> Matched:
    """Join on (exam, side). `labels` (from --labels) take precedence over a label column."""
    score_exams = {k[0] for k in scores.keys}
    model_exams = {k[0] for k in model.malignant}
    common = score_exams & model_exams
    if not common:
        raise InputError(
            "no exam id of the radiologist scores is in the predictions",
            hint="check --exam-column, and that both files use the same exam ids "
                 f"(scores e.g. {min(score_exams)!r}, predictions e.g. {min(model_exams)!r})",
        )
    rows = [i for i, k in enumerate(scores.keys) if k[0] in common]
    keys = [scores.keys[i] for i in rows]
    label_map = labels.malignant if labels is not None else scores.labels
    y = None
    if label_map is not None:
        missing = [k for k in keys if k not in label_map]
        if missing:
            raise InputError(f"no label for exam {missing[0][0]!r} side {missing[0][1]} "
                             f"({len(missing)} breasts unlabelled)",
                             hint="the labels must cover every matched breast")
        y = np.array([label_map[k] for k in keys], dtype=np.int64)
    return Matched(
        keys=keys,
        readers=scores.readers,
        reader_scores=scores.scores[rows],
        model=np.array([model.malignant[k] for k in keys]),
        labels=y,
        scores_only=sorted(score_exams - common),
        predictions_only=sorted(model_exams - common),
    )


def check_weight(weight: float) -> float:
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"--weight {weight:g} is outside 0-1",
                          hint="w weighs the radiologist: 0 = model only, 1 = reader only")
    return weight


def blend(reader: NDArray[np.float64], model: NDArray[np.float64],
          weight: float) -> NDArray[np.float64]:
    """w * reader + (1 - w) * model; `reader` may be (n,) or (n, readers)."""
    check_weight(weight)
    m = model if reader.ndim == 1 else model[:, None]
    return np.asarray(weight * reader + (1.0 - weight) * m, dtype=np.float64)


# --- metrics ---------------------------------------------------------------------------------


class MetricSet(BaseModel):
    """One statistic (AUROC or AUPRC) for every score of the study."""

    model_config = ConfigDict(frozen=True)

    model: Estimate
    readers: dict[str, Estimate]
    mean_of_readers: Estimate  # mean of the readers' AUCs (the paper's convention)
    averaged_reader_score: Estimate  # AUC of the mean of the readers' scores per breast
    hybrids: dict[str, Estimate]
    mean_of_hybrids: Estimate
    hybrid_minus_reader: dict[str, Estimate]  # paired, same resamples
    mean_hybrid_minus_mean_reader: Estimate


class HybridMetrics(BaseModel):
    model_config = ConfigDict(frozen=True)

    n_breasts: int
    n_exams: int
    n_positive: int
    n_bootstrap: int
    seed: int
    ci_level: float
    resamples_skipped: int  # resamples with one class only (no AUC): dropped
    auroc: MetricSet
    auprc: MetricSet


def _score_matrix(m: Matched, weight: float) -> NDArray[np.float64]:
    """Columns: model, readers..., averaged reader score, hybrids... (fixed order)."""
    hybrids = blend(m.reader_scores, m.model, weight)
    return np.column_stack([m.model, m.reader_scores, m.reader_scores.mean(axis=1), hybrids])


def _metric_set(point: NDArray[np.float64], draws: NDArray[np.float64] | None, r: int,
                readers: list[str], level: float) -> MetricSet:
    def est(p: float, d: NDArray[np.float64] | None) -> Estimate:
        return metrics.estimate(float(p), d, level)

    def col(j: int) -> NDArray[np.float64] | None:
        return None if draws is None else draws[:, j]

    rd = slice(1, 1 + r)
    hd = slice(2 + r, 2 + 2 * r)
    dr = None if draws is None else draws[:, rd]
    dh = None if draws is None else draws[:, hd]
    pr, ph = point[rd], point[hd]
    return MetricSet(
        model=est(point[0], col(0)),
        readers={name: est(pr[i], col(1 + i)) for i, name in enumerate(readers)},
        mean_of_readers=est(pr.mean(), None if dr is None else dr.mean(axis=1)),
        averaged_reader_score=est(point[1 + r], col(1 + r)),
        hybrids={name: est(ph[i], col(2 + r + i)) for i, name in enumerate(readers)},
        mean_of_hybrids=est(ph.mean(), None if dh is None else dh.mean(axis=1)),
        hybrid_minus_reader={
            name: est(ph[i] - pr[i], None if dh is None or dr is None else dh[:, i] - dr[:, i])
            for i, name in enumerate(readers)
        },
        mean_hybrid_minus_mean_reader=est(
            ph.mean() - pr.mean(),
            None if dh is None or dr is None else dh.mean(axis=1) - dr.mean(axis=1)),
    )


def hybrid_metrics(m: Matched, weight: float = DEFAULT_WEIGHT,
                   n_bootstrap: int = metrics.DEFAULT_RESAMPLES, seed: int = 0,
                   level: float = metrics.DEFAULT_CI_LEVEL) -> HybridMetrics:
    """Point estimates from scikit-learn; CIs from `n_bootstrap` exam-level resamples (0: none)."""
    if m.labels is None:
        raise ConfigError("metrics need labels", hint="give --labels or a label column")
    y = m.labels
    s = _score_matrix(m, weight)
    roc = np.array([metrics.auroc(y, s[:, j]) for j in range(s.shape[1])])
    pr = np.array([metrics.auprc(y, s[:, j]) for j in range(s.shape[1])])
    draws = metrics.bootstrap(y, s, m.exams, n_bootstrap, seed) if n_bootstrap > 0 else None
    r = len(m.readers)
    return HybridMetrics(
        n_breasts=len(y), n_exams=len(set(m.exams)), n_positive=int(y.sum()),
        n_bootstrap=n_bootstrap, seed=seed, ci_level=level,
        resamples_skipped=draws.skipped if draws else 0,
        auroc=_metric_set(roc, draws.auroc if draws else None, r, m.readers, level),
        auprc=_metric_set(pr, draws.auprc if draws else None, r, m.readers, level),
    )


class SweepPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    weight: float
    mean_hybrid_auroc: float
    mean_hybrid_auprc: float
    hybrid_auroc: dict[str, float]


def sweep(m: Matched, weights: list[float]) -> list[SweepPoint]:
    """Point estimates of the hybrids over weights (no CIs: one bootstrap per weight is costly)."""
    if m.labels is None:
        raise ConfigError("--sweep needs labels", hint="give --labels or a label column")
    points = []
    for w in weights:
        h = blend(m.reader_scores, m.model, w)
        roc = [metrics.auroc(m.labels, h[:, j]) for j in range(h.shape[1])]
        pr = [metrics.auprc(m.labels, h[:, j]) for j in range(h.shape[1])]
        points.append(SweepPoint(weight=w, mean_hybrid_auroc=float(np.mean(roc)),
                                 mean_hybrid_auprc=float(np.mean(pr)),
                                 hybrid_auroc=dict(zip(m.readers, map(float, roc), strict=True))))
    return points


def sweep_weights(step: float) -> list[float]:
    if not 0.0 < step <= 1.0:
        raise ConfigError(f"--sweep-step {step:g} must be in (0, 1]")
    n = int(round(1.0 / step))
    return [round(i / n, 10) for i in range(n + 1)]


# --- report ----------------------------------------------------------------------------------


class BreastRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    exam_id: str
    side: str
    label: int | None
    model: float
    readers: dict[str, float]
    hybrids: dict[str, float]


class HybridReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_version: str = SCHEMA_VERSION
    kind: str = "hybrid"
    weight: float
    model_source: str
    readers: list[str]
    n_breasts: int
    unmatched_scores_exams: list[str]  # in the scores, not in the predictions
    unmatched_prediction_exams: list[str]  # in the predictions, not in the scores
    failed_predictions: list[str]
    warnings: list[str]
    metrics: HybridMetrics | None
    sweep: list[SweepPoint] | None
    breasts: list[BreastRow]


def breast_rows(m: Matched, weight: float) -> list[BreastRow]:
    hybrids = blend(m.reader_scores, m.model, weight)
    return [
        BreastRow(
            exam_id=k[0], side=k[1],
            label=None if m.labels is None else int(m.labels[i]),
            model=float(m.model[i]),
            readers=dict(zip(m.readers, map(float, m.reader_scores[i]), strict=True)),
            hybrids=dict(zip(m.readers, map(float, hybrids[i]), strict=True)),
        )
        for i, k in enumerate(m.keys)
    ]


def breasts_csv(rows: list[BreastRow], readers: list[str]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["exam_id", "side", "label", "model", *readers, *(f"hybrid_{r}" for r in readers)])
    for b in rows:
        w.writerow([b.exam_id, b.side, "" if b.label is None else b.label, f"{b.model:.6g}",
                    *(f"{b.readers[r]:.6g}" for r in readers),
                    *(f"{b.hybrids[r]:.6g}" for r in readers)])
    return buf.getvalue()


def hybrid_report(scores: ReaderScores, model: ModelScores, labels: Labels | None = None, *,
                  weight: float = DEFAULT_WEIGHT, n_bootstrap: int = metrics.DEFAULT_RESAMPLES,
                  seed: int = 0, sweep_step: float | None = None) -> HybridReport:
    """The whole `hybrid` computation: match the tables, blend, and score (metrics need labels;
    `sweep_step`: also the hybrids' AUCs for w from 0 to 1 in these steps)."""
    check_weight(weight)
    matched = match(scores, model, labels)
    warnings = [*scores.warnings, *model.warnings]
    if matched.scores_only:
        warnings.append(f"{len(matched.scores_only)} exams of the scores have no prediction")
    if matched.predictions_only:
        warnings.append(f"{len(matched.predictions_only)} predicted exams have no reader scores")
    result_metrics = (hybrid_metrics(matched, weight, n_bootstrap, seed)
                      if matched.labels is not None else None)
    if result_metrics is not None and matched.labels is not None:
        small = metrics.ci_size_warning("hybrid metrics", matched.labels, matched.exams,
                                        result_metrics.resamples_skipped, n_bootstrap,
                                        result_metrics.ci_level)
        if small is not None:
            warnings.append(small)
    points = sweep(matched, sweep_weights(sweep_step)) if sweep_step is not None else None
    rows = breast_rows(matched, weight)
    return HybridReport(
        weight=weight, model_source=model.source, readers=matched.readers,
        n_breasts=len(rows), unmatched_scores_exams=matched.scores_only,
        unmatched_prediction_exams=matched.predictions_only,
        failed_predictions=model.failed, warnings=warnings, metrics=result_metrics,
        sweep=points, breasts=rows,
    )


def hybrid_pngs(scores: ReaderScores, model: ModelScores, labels: Labels | None = None, *,
                n_bootstrap: int = metrics.DEFAULT_RESAMPLES, seed: int = 0
                ) -> tuple[bytes, bytes]:
    """`hybrid --plots`: the model's exam-level ROC and PR curves (AUC with CI, bootstrap band)
    with each reader as a point beside them (an exam recalled when the reader gave either breast
    any suspicion, score above 0), as in Wu et al. 2019, figure 4."""
    m = match(scores, model, labels)
    if m.labels is None:
        raise ConfigError("--plots needs labels (--labels, or a label column of the scores)")
    exams = sorted(set(m.exams))
    index = {e: i for i, e in enumerate(exams)}
    y = np.zeros(len(exams), dtype=np.int64)
    s = np.full(len(exams), -np.inf)
    r = np.full((len(exams), len(m.readers)), -np.inf)
    for i, k in enumerate(m.keys):
        j = index[k[0]]
        y[j] = max(y[j], int(m.labels[i]))
        s[j] = max(s[j], float(m.model[i]))
        r[j] = np.maximum(r[j], m.reader_scores[i])
    readers = reader_points(y, r, m.readers)
    return roc_pr_pngs([ScoredCases("model, exam level", y, s, exams)], readers, n_bootstrap,
                       seed, title="exam level")
