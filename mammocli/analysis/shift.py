"""Shift report: does the model behave differently on some scanners or image types?

Per subgroup (each value of each column: Manufacturer, ManufacturerModelName, pixel spacing bins,
image size, KVP bins, ...), at exam level: the number of exams and of malignant ones, the AUROC
with its bootstrap CI, and a summary of the scores. Each subgroup is compared with the rest (all
other exams), and a plain warning is raised when

- **AUROC**: the bootstrap CI of (subgroup AUROC - rest AUROC) excludes 0. Subgroup and rest are
  independent samples, so each is resampled on its own and the draws are subtracted;
- **scores**: the scores of the subgroup's *non-malignant* exams differ from the rest's by a
  two-sided Mann-Whitney test (non-malignant only, so a different share of cancers alone is no
  shift; this is the "always-low scores on other data" failure) *and* the effect is not trivial:
  the probability that a subgroup exam scores above a rest exam (ties half) is outside
  0.5 +/- `min_effect` (large archives make negligible differences significant).

Compared with the rest, one odd scanner would make every other scanner look odd too (its "rest"
holds the odd one). So within a column the most different subgroup is flagged first and left out
of the others' reference, then the others are compared again, until none differs. Of two values
that differ from each other, the smaller is flagged.

Both tests are Bonferroni-corrected over the comparisons made (a report of 20 subgroups would
otherwise warn by chance): the difference CI is taken at level 1 - alpha/m, the test at p <
alpha/m. Subgroups with fewer than `min_cases` non-malignant exams (or one class only, for the
AUROC) are summarised but not tested, and say so.

`header_fields` picks the non-identifying fields of a DICOM header for subgrouping from a fixed
allow-list (device, geometry and exposure); names, IDs, dates, UIDs, institution and station never
leave it. Subgroup values come from those fields, so they may appear in warnings and reports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict
from scipy.stats import mannwhitneyu

from ..errors import InputError
from ..io.dicom.header_fields import (  # noqa: F401 - re-exported
    ALLOWED_FIELDS,
    DERIVED_FIELDS,
    NUMBER_FIELDS,
    TEXT_FIELDS,
    exam_header,
    header_fields,
)
from ..outputs.schema import HeaderValue
from . import metrics
from .curves import figure_png
from .evaluation import Evaluated, Subgroup
from .metrics import Estimate

FloatArray = NDArray[np.float64]

# --- subgroups from the header fields (collected at discovery: io/dicom/header_fields.py) ----

# Bin edges for numeric fields (values between two edges share a subgroup); typical FFDM values:
# pixel spacing 0.05-0.1 mm, 25-35 kVp.
DEFAULT_EDGES: dict[str, tuple[float, ...]] = {
    "PixelSpacing": (0.06, 0.08, 0.1),
    "ImagerPixelSpacing": (0.06, 0.08, 0.1),
    "KVP": (26.0, 28.0, 30.0, 32.0),
    "Exposure": (50.0, 100.0, 150.0, 200.0),
    "BodyPartThickness": (30.0, 50.0, 70.0),
    "CompressionForce": (50.0, 100.0, 150.0),
    "TissueMean": (0.2, 0.4, 0.6, 0.8),  # a fraction of the 16-bit range
}


def subgroup_columns(headers: Sequence[Mapping[str, HeaderValue]],
                     fields: Sequence[str] | None = None,
                     edges: Mapping[str, tuple[float, ...]] | None = None
                     ) -> dict[str, list[str]]:
    """Per field, each exam's subgroup: its text, or its number's bin (the labels of
    `evaluate --by column:edges`), or "missing". `fields` defaults to all fields present."""
    edges = DEFAULT_EDGES if edges is None else edges
    names = list(fields) if fields is not None else [
        f for f in ALLOWED_FIELDS if any(f in h for h in headers)]
    out: dict[str, list[str]] = {}
    for name in names:
        binning = Subgroup(name, tuple(sorted(edges.get(name, ()))))
        column = []
        for h in headers:
            v = h.get(name)
            if v is None:
                column.append("missing")
            elif isinstance(v, float):
                column.append(binning.value(repr(v), "") if binning.edges else f"{v:g}")
            else:
                column.append(v)
        out[name] = column
    return out


# --- the report -----------------------------------------------------------------------------


class ScoreSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    n: int
    mean: float
    q05: float
    q25: float
    median: float
    q75: float
    q95: float


class SubgroupShift(BaseModel):
    model_config = ConfigDict(frozen=True)

    column: str
    value: str
    n: int
    n_positive: int
    auroc: Estimate | None  # None: one class only
    rest_auroc: Estimate | None
    auroc_difference: Estimate | None  # subgroup - rest; CI at the corrected level
    scores: ScoreSummary  # all exams of the subgroup
    negative_scores: ScoreSummary | None  # its non-malignant exams
    rest_negative_scores: ScoreSummary | None
    higher_than_rest: float | None  # P(subgroup negative > rest negative), ties half
    distribution_p: float | None  # Mann-Whitney, two-sided, non-malignant exams
    auroc_differs: bool = False
    scores_differ: bool = False
    compared_without: list[str] = []  # subgroups flagged before, left out of the reference
    note: str | None = None  # why a test was not made
    warnings: list[str] = []


class ShiftReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["shift"] = "shift"
    level: str
    n: int
    n_positive: int
    auroc: Estimate
    scores: ScoreSummary
    n_bootstrap: int
    seed: int
    ci_level: float
    alpha: float
    corrected_level: float  # 1 - alpha/m: the level of the difference CIs
    n_comparisons: int
    min_effect: float
    min_cases: int
    rule: str
    subgroups: list[SubgroupShift]
    warnings: list[str]


def _summary(s: FloatArray) -> ScoreSummary:
    q = np.quantile(s, [0.05, 0.25, 0.5, 0.75, 0.95])
    return ScoreSummary(n=len(s), mean=float(np.mean(s)), q05=float(q[0]), q25=float(q[1]),
                        median=float(q[2]), q75=float(q[3]), q95=float(q[4]))


def _fmt(e: Estimate) -> str:
    if e.ci_low is None or e.ci_high is None:
        return f"{e.estimate:.3f}"
    return f"{e.estimate:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"


def _two_classes(y: NDArray[np.int64]) -> bool:
    return 0 < int(y.sum()) < len(y)


@dataclass
class _Auc:
    diff: Estimate
    rest: Estimate
    draws: FloatArray | None  # the subgroup's, reused between rounds


@dataclass
class _Scores:
    higher: float
    p: float
    median_in: float
    median_rest: float


def shift_report(y: NDArray[np.integer], scores: FloatArray, columns: Mapping[str, Sequence[str]],
                 groups: Sequence[str] | None = None, level: str = "exam",
                 n_bootstrap: int = metrics.DEFAULT_RESAMPLES, seed: int = 0,
                 ci_level: float = metrics.DEFAULT_CI_LEVEL, alpha: float = 0.05,
                 min_effect: float = 0.05, min_cases: int = 10) -> ShiftReport:
    """Per subgroup of each column (one value per case), against the rest; see the module doc.

    y, scores: per case (exam); groups: each case's resampling unit (None: each case alone)."""
    y64: NDArray[np.int64] = np.asarray(y, dtype=np.int64)
    y = y64
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(list(groups) if groups is not None else [str(i) for i in range(len(y))])
    for name, values in columns.items():
        if len(values) != len(y):
            raise InputError(f"shift report: column {name!r} has {len(values)} values for "
                             f"{len(y)} exams", hint="give one value per exam")
    overall = metrics.auroc(y, s, f"{level}-level labels")
    all_draws = metrics.bootstrap(y, s, g, n_bootstrap, seed) if n_bootstrap > 0 else None
    auroc_all = metrics.estimate(overall, all_draws.auroc[:, 0] if all_draws else None, ci_level)
    negative = y == 0
    masks = {name: {value: np.asarray(list(values), dtype=object) == value
                    for value in sorted(set(values))} for name, values in columns.items()}
    # the number of comparisons (each subgroup against the rest) sets the corrected level
    n_tests = 0
    for by_value in masks.values():
        for inside in by_value.values():
            n_tests += int(_two_classes(y[inside]) and _two_classes(y[~inside]))
            n_tests += int((inside & negative).sum() >= min_cases
                           and (~inside & negative).sum() >= min_cases)
    m = max(1, n_tests)
    corrected, p_cut = 1.0 - alpha / m, alpha / m
    ctx = _Context(y64, s, g, n_bootstrap, seed, ci_level, corrected, p_cut, min_effect,
                   min_cases)
    rows = [row for name, by_value in masks.items() for row in ctx.column(name, by_value)]
    rule = (f"a subgroup is flagged when the {corrected:.2%} bootstrap CI of its AUROC minus the "
            f"other exams' excludes 0, or when its non-malignant exams' scores differ from the "
            f"other exams' (two-sided Mann-Whitney p < {p_cut:.2g}) with P(an exam of the "
            f"subgroup scores higher) outside {0.5 - min_effect:g}-{0.5 + min_effect:g} "
            f"({alpha:g}, Bonferroni-corrected over {m} comparisons); the most different "
            f"subgroup of a column is flagged first and left out of the others' comparison")
    return ShiftReport(
        level=level, n=len(y), n_positive=int(y.sum()), auroc=auroc_all, scores=_summary(s),
        n_bootstrap=n_bootstrap, seed=seed, ci_level=ci_level, alpha=alpha,
        corrected_level=corrected, n_comparisons=m, min_effect=min_effect, min_cases=min_cases,
        rule=rule, subgroups=rows, warnings=[w for r in rows for w in r.warnings])


@dataclass
class _Context:
    y: NDArray[np.int64]
    s: FloatArray
    g: NDArray[Any]
    n_bootstrap: int
    seed: int
    ci_level: float
    corrected: float
    p_cut: float
    min_effect: float
    min_cases: int

    def _auc(self, inside: NDArray[np.bool_], ref: NDArray[np.bool_], k: int,
             sub: FloatArray | None) -> _Auc | None:
        y, s, g = self.y, self.s, self.g
        if not (_two_classes(y[inside]) and ref.any() and _two_classes(y[ref])):
            return None
        if self.n_bootstrap > 0:
            # subgroup and reference are independent samples: resample each on its own
            if sub is None:
                sub = metrics.bootstrap(y[inside], s[inside], g[inside], self.n_bootstrap,
                                        self.seed + 1 + 2 * k).auroc[:, 0]
            rest_draws = metrics.bootstrap(y[ref], s[ref], g[ref], self.n_bootstrap,
                                           self.seed + 2 + 2 * k).auroc[:, 0]
            n = min(len(sub), len(rest_draws))
            d: FloatArray | None = sub[:n] - rest_draws[:n]
            rest: FloatArray | None = rest_draws
        else:
            rest = d = None
        point_in, point_rest = metrics.auroc(y[inside], s[inside]), metrics.auroc(y[ref], s[ref])
        return _Auc(diff=metrics.estimate(point_in - point_rest, d, self.corrected),
                    rest=metrics.estimate(point_rest, rest, self.ci_level), draws=sub)

    def _scores(self, inside: NDArray[np.bool_], ref: NDArray[np.bool_]) -> _Scores | None:
        a = self.s[inside & (self.y == 0)]
        b = self.s[ref & (self.y == 0)]
        if len(a) < self.min_cases or len(b) < self.min_cases:
            return None
        test = mannwhitneyu(a, b, alternative="two-sided")
        return _Scores(higher=float(test.statistic) / (len(a) * len(b)), p=float(test.pvalue),
                       median_in=float(np.median(a)), median_rest=float(np.median(b)))

    def _auc_differs(self, r: _Auc | None) -> bool:
        d = r.diff if r is not None else None
        return bool(d is not None and d.ci_low is not None and d.ci_high is not None
                    and (d.ci_low > 0 or d.ci_high < 0))

    def _scores_differ(self, r: _Scores | None) -> bool:
        return r is not None and r.p < self.p_cut and abs(r.higher - 0.5) > self.min_effect

    def column(self, name: str, by_value: Mapping[str, NDArray[np.bool_]]
               ) -> list[SubgroupShift]:
        """Flag the most different subgroup, leave it out of the others' reference, repeat:
        otherwise one odd scanner makes every other one look odd too (its "rest" holds it)."""
        values = list(by_value)
        index = {v: i for i, v in enumerate(values)}
        sizes = {v: int(by_value[v].sum()) for v in values}
        auc: dict[str, tuple[_Auc | None, list[str]]] = {}
        sub_draws: dict[str, FloatArray | None] = {}
        flagged: list[str] = []
        while True:  # AUROC rounds
            left = [v for v in values if v not in flagged]
            for v in left:
                ref = ~by_value[v] & ~self._union(by_value, flagged)
                r = self._auc(by_value[v], ref, index[v], sub_draws.get(v))
                if r is not None:
                    sub_draws[v] = r.draws
                auc[v] = (r, list(flagged))
            hits = [v for v in left if self._auc_differs(auc[v][0])]
            if not hits:
                break
            flagged.append(max(hits, key=lambda v: (abs(_diff(auc[v][0])), -sizes[v])))
        dist: dict[str, tuple[_Scores | None, list[str]]] = {}
        flagged_s: list[str] = []
        while True:  # score-distribution rounds
            left = [v for v in values if v not in flagged_s]
            for v in left:
                ref = ~by_value[v] & ~self._union(by_value, flagged_s)
                dist[v] = (self._scores(by_value[v], ref), list(flagged_s))
            hits = [v for v in left if self._scores_differ(dist[v][0])]
            if not hits:
                break
            flagged_s.append(min(hits, key=lambda v: (-abs(_higher(dist[v][0]) - 0.5),
                                                      sizes[v])))
        return [self._row(name, v, by_value, auc[v], dist[v], v in flagged, v in flagged_s)
                for v in values]

    @staticmethod
    def _union(by_value: Mapping[str, NDArray[np.bool_]], names: list[str]) -> NDArray[np.bool_]:
        out = np.zeros(len(next(iter(by_value.values()))), dtype=bool)
        for n in names:
            out |= by_value[n]
        return out

    def _row(self, name: str, value: str, by_value: Mapping[str, NDArray[np.bool_]],
             auc: tuple[_Auc | None, list[str]], dist: tuple[_Scores | None, list[str]],
             auc_flag: bool, score_flag: bool) -> SubgroupShift:
        inside = by_value[value]
        y, s = self.y, self.s
        ys, ss = y[inside], s[inside]
        where = f"{name} = {value}"
        notes: list[str] = []
        warnings: list[str] = []
        a, a_left_out = auc
        sc, s_left_out = dist
        auroc = None
        if _two_classes(ys):
            d = a.draws if a is not None else None
            auroc = metrics.estimate(metrics.auroc(ys, ss), d, self.ci_level)
        if not (~inside).any():
            notes.append("every exam has this value: nothing to compare with")
        elif auroc is None:
            notes.append("one class only: no AUROC")
        elif a is None:
            notes.append("no other exams with both classes to compare the AUROC with")
        if auc_flag and a is not None and auroc is not None:
            diff = a.diff
            warnings.append(
                f"{where}: AUROC {_fmt(auroc)} is "
                f"{'lower' if (diff.ci_high or 0) < 0 else 'higher'} than the other exams' "
                f"{_fmt(a.rest)}{_leaving(a_left_out)} (difference {diff.estimate:+.3f}, "
                f"{self.corrected:.2%} CI {diff.ci_low:+.3f} to {diff.ci_high:+.3f}, "
                f"excludes 0)")
        if sc is None and (~inside).any():
            notes.append(f"fewer than {self.min_cases} non-malignant exams here or in the "
                         "other exams: scores not compared")
        if score_flag and sc is not None:
            warnings.append(
                f"{where}: scores of non-malignant exams run "
                f"{'higher' if sc.higher > 0.5 else 'lower'} than on the other exams"
                f"{_leaving(s_left_out)} (median {sc.median_in:.3g} vs {sc.median_rest:.3g}; an "
                f"exam here scores higher with probability {sc.higher:.2f}; Mann-Whitney p = "
                f"{sc.p:.2g}): check the calibration and operating points for these images")
        neg_in = ss[ys == 0]
        ref = ~inside & ~self._union(by_value, s_left_out)
        neg_rest = s[ref & (y == 0)]
        return SubgroupShift(
            column=name, value=value, n=int(inside.sum()), n_positive=int(ys.sum()),
            auroc=auroc, rest_auroc=a.rest if a else None, auroc_difference=a.diff if a else None,
            scores=_summary(ss), negative_scores=_summary(neg_in) if len(neg_in) else None,
            rest_negative_scores=_summary(neg_rest) if len(neg_rest) else None,
            higher_than_rest=sc.higher if sc else None, distribution_p=sc.p if sc else None,
            auroc_differs=auc_flag, scores_differ=score_flag, compared_without=sorted(
                set(a_left_out) | set(s_left_out)),
            note="; ".join(notes) or None, warnings=warnings)


def _diff(r: _Auc | None) -> float:
    return r.diff.estimate if r is not None else 0.0


def _higher(r: _Scores | None) -> float:
    return r.higher if r is not None else 0.5


def _leaving(left_out: list[str]) -> str:
    return f" (not counting {', '.join(left_out)}, flagged already)" if left_out else ""


def shift_from_evaluated(ev: Evaluated, headers: Mapping[str, Mapping[str, HeaderValue]],
                         fields: Sequence[str] | None = None,
                         edges: Mapping[str, tuple[float, ...]] | None = None,
                         task: str = "malignant", **options: Any) -> ShiftReport:
    """`evaluate --by-header`: the exam-level shift report of an evaluation, with each exam's
    header fields (`exam_header` of its images; exams without any are "missing")."""
    exams = sorted({k[0] for k in ev.keys})
    ye, se = ev.exam_level(task)
    columns = subgroup_columns([headers.get(e, {}) for e in exams], fields, edges)
    options.setdefault("n_bootstrap", ev.report.n_bootstrap)
    options.setdefault("seed", ev.report.seed)
    options.setdefault("ci_level", ev.report.ci_level)
    return shift_report(ye, se, columns, exams, "exam", **options)


# --- forest plot ----------------------------------------------------------------------------


def forest_figure(report: ShiftReport, title: str = "subgroups") -> Figure:
    """Left: each subgroup's AUROC with its CI against the overall AUROC; right: the scores of
    its non-malignant exams (median, quartiles as a thick bar, 5-95% as a thin one). Flagged
    subgroups are red."""
    rows = report.subgroups
    fig = Figure(figsize=(10, 1.2 + 0.32 * max(1, len(rows))))
    ax, dist = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2])
    ypos = np.arange(len(rows))[::-1]
    for yp, r in zip(ypos, rows, strict=True):
        color = "tab:red" if (r.auroc_differs or r.scores_differ) else "tab:blue"
        if r.auroc is not None:
            lo = r.auroc.ci_low if r.auroc.ci_low is not None else r.auroc.estimate
            hi = r.auroc.ci_high if r.auroc.ci_high is not None else r.auroc.estimate
            ax.plot([lo, hi], [yp, yp], color=color, linewidth=1.5)
            ax.plot([r.auroc.estimate], [yp], marker="s", color=color,
                    markersize=4 + 6 * math.sqrt(r.n / report.n))
        ns = r.negative_scores
        if ns is not None:
            dist.plot([ns.q05, ns.q95], [yp, yp], color=color, linewidth=1)
            dist.plot([ns.q25, ns.q75], [yp, yp], color=color, linewidth=4, alpha=0.6)
            dist.plot([ns.median], [yp], marker="|", color="black", markersize=10)
    ax.axvline(report.auroc.estimate, color="grey", linestyle="--", linewidth=1)
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(ypos, [f"{r.column} = {r.value}  (n={r.n}, {r.n_positive} malignant)"
                         for r in rows], fontsize="small")
    ax.set(xlabel=f"AUROC, {report.ci_level:.0%} CI (dashed: all exams, "
                  f"{_fmt(report.auroc)})", title=title, xlim=(0.0, 1.02),
           ylim=(-0.8, len(rows) - 0.2))
    negatives = [r.negative_scores.q05 for r in rows if r.negative_scores is not None]
    if negatives and min(negatives) > 0:
        dist.set_xscale("log")  # screening scores crowd near 0
    dist.set(xlabel="non-malignant exams' scores (5/25/50/75/95%)")
    for a in (ax, dist):
        a.grid(True, axis="x", linewidth=0.4, alpha=0.5)
    fig.tight_layout()
    return fig


def forest_png(report: ShiftReport, title: str = "subgroups") -> bytes:
    return figure_png(forest_figure(report, title))
