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

Each subgroup is compared with all other exams together: when a column has two large subgroups
that differ, both are flagged, in opposite directions (each differs from the other); a shifted
minority (a new scanner) is flagged alone.

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
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict
from scipy.stats import mannwhitneyu

from ..errors import InputError
from . import metrics
from .curves import figure_png
from .evaluation import Evaluated, Subgroup
from .metrics import Estimate

FloatArray = NDArray[np.float64]
HeaderValue = str | float

# --- DICOM header fields for subgrouping ----------------------------------------------------

# The allow-list: device, detector, geometry and exposure. Nothing that names or dates a person,
# a study or a place (no StationName, InstitutionName, DeviceSerialNumber, UIDs, dates).
TEXT_FIELDS: tuple[str, ...] = (
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "DetectorType",
    "PresentationIntentType", "PhotometricInterpretation", "AnodeTargetMaterial",
    "FilterMaterial",
)
NUMBER_FIELDS: tuple[str, ...] = (
    "PixelSpacing", "ImagerPixelSpacing", "Rows", "Columns", "BitsStored", "KVP", "Exposure",
    "ExposureInuAs", "ExposureTime", "XRayTubeCurrent", "BodyPartThickness", "CompressionForce",
    "RelativeXRayExposure",
)
DERIVED_FIELDS: tuple[str, ...] = ("ImageSize",)  # "RowsxColumns"
ALLOWED_FIELDS: tuple[str, ...] = TEXT_FIELDS + NUMBER_FIELDS + DERIVED_FIELDS

# Bin edges for numeric fields (values between two edges share a subgroup); typical FFDM values:
# pixel spacing 0.05-0.1 mm, 25-35 kVp.
DEFAULT_EDGES: dict[str, tuple[float, ...]] = {
    "PixelSpacing": (0.06, 0.08, 0.1),
    "ImagerPixelSpacing": (0.06, 0.08, 0.1),
    "KVP": (26.0, 28.0, 30.0, 32.0),
    "Exposure": (50.0, 100.0, 150.0, 200.0),
    "BodyPartThickness": (30.0, 50.0, 70.0),
    "CompressionForce": (50.0, 100.0, 150.0),
}


def _number(value: Any) -> float | None:
    """A finite float from a DS/IS/US value or the first of a multi-value; None otherwise."""
    if value is None or isinstance(value, bytes | bytearray):
        return None
    if not isinstance(value, str) and isinstance(value, Sequence):
        if len(value) == 0:
            return None
        value = value[0]  # PixelSpacing: row spacing (mammograms have square pixels)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bytes | bytearray):
        return None
    if not isinstance(value, str) and isinstance(value, Sequence):
        value = "\\".join(str(v) for v in value)  # e.g. SoftwareVersions, as DICOM joins them
    text = " ".join(str(value).split())
    return text or None


def header_fields(ds: Any) -> dict[str, HeaderValue]:
    """The allow-listed, non-identifying fields present in a pydicom Dataset: text stripped,
    numbers as floats. Absent, empty or malformed values are left out (never raised)."""
    out: dict[str, HeaderValue] = {}
    for name in (*TEXT_FIELDS, *NUMBER_FIELDS):
        try:
            raw = ds.get(name)
            value = getattr(raw, "value", raw)
            parsed: HeaderValue | None = _text(value) if name in TEXT_FIELDS else _number(value)
        except Exception:  # noqa: BLE001 - a malformed element is absent for subgrouping
            parsed = None
        if parsed is not None:
            out[name] = parsed
    rows, cols = out.get("Rows"), out.get("Columns")
    if isinstance(rows, float) and isinstance(cols, float):
        out["ImageSize"] = f"{rows:g}x{cols:g}"
    return out


def exam_header(views: Sequence[Mapping[str, HeaderValue]]) -> dict[str, HeaderValue]:
    """One exam's fields from its images': text the value all images share ("mixed" when they
    differ), numbers the median (KVP and exposure differ between views)."""
    out: dict[str, HeaderValue] = {}
    for name in ALLOWED_FIELDS:
        values = [v[name] for v in views if name in v]
        if not values:
            continue
        if all(isinstance(v, float) for v in values):
            out[name] = float(statistics.median(float(v) for v in values))
        else:
            texts = {str(v) for v in values}
            out[name] = texts.pop() if len(texts) == 1 else "mixed"
    return out


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


def shift_report(y: NDArray[np.integer], scores: FloatArray, columns: Mapping[str, Sequence[str]],
                 groups: Sequence[str] | None = None, level: str = "exam",
                 n_bootstrap: int = metrics.DEFAULT_RESAMPLES, seed: int = 0,
                 ci_level: float = metrics.DEFAULT_CI_LEVEL, alpha: float = 0.05,
                 min_effect: float = 0.05, min_cases: int = 10) -> ShiftReport:
    """Per subgroup of each column (one value per case), against the rest; see the module doc.

    y, scores: per case (exam); groups: each case's resampling unit (None: each case alone)."""
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(list(groups) if groups is not None else [str(i) for i in range(len(y))])
    for name, values in columns.items():
        if len(values) != len(y):
            raise InputError(f"shift report: column {name!r} has {len(values)} values for "
                             f"{len(y)} exams", hint="give one value per exam")
    overall = metrics.auroc(y, s, f"{level}-level labels")
    all_draws = metrics.bootstrap(y, s, g, n_bootstrap, seed) if n_bootstrap > 0 else None
    auroc_all = metrics.estimate(overall, all_draws.auroc[:, 0] if all_draws else None, ci_level)

    # plan first: the number of comparisons sets the corrected level
    plan: list[tuple[str, str, NDArray[np.bool_]]] = []
    for name, values in columns.items():
        v = np.asarray(list(values), dtype=object)
        for value in sorted(set(values)):
            plan.append((name, value, v == value))
    negative = y == 0
    n_tests = 0
    for _, _, inside in plan:
        if (~inside).any():
            n_tests += int(_two_classes(y[inside]) and _two_classes(y[~inside]))
            n_tests += int((inside & negative).sum() >= min_cases
                           and (~inside & negative).sum() >= min_cases)
    m = max(1, n_tests)
    corrected = 1.0 - alpha / m

    rows: list[SubgroupShift] = []
    for k, (name, value, inside) in enumerate(plan):
        rows.append(_compare(name, value, inside, y, s, g, n_bootstrap, seed + 1 + 2 * k,
                             ci_level, corrected, alpha / m, min_effect, min_cases))
    rule = (f"a subgroup is flagged when the {corrected:.2%} bootstrap CI of its AUROC minus the "
            f"rest's excludes 0, or when its non-malignant exams' scores differ from the rest's "
            f"(two-sided Mann-Whitney p < {alpha / m:.2g}) with P(subgroup exam scores higher) "
            f"outside {0.5 - min_effect:g}-{0.5 + min_effect:g}; {alpha:g} Bonferroni-corrected "
            f"over {m} comparisons")
    return ShiftReport(
        level=level, n=len(y), n_positive=int(y.sum()), auroc=auroc_all, scores=_summary(s),
        n_bootstrap=n_bootstrap, seed=seed, ci_level=ci_level, alpha=alpha,
        corrected_level=corrected, n_comparisons=m, min_effect=min_effect, min_cases=min_cases,
        rule=rule, subgroups=rows, warnings=[w for r in rows for w in r.warnings])


def _compare(name: str, value: str, inside: NDArray[np.bool_], y: NDArray[np.int64],
             s: FloatArray, g: NDArray[Any], n_bootstrap: int, seed: int, ci_level: float,
             corrected: float, p_cut: float, min_effect: float, min_cases: int
             ) -> SubgroupShift:
    ys, ss, yr, sr = y[inside], s[inside], y[~inside], s[~inside]
    where = f"{name} = {value}"
    notes: list[str] = []
    warnings: list[str] = []
    auroc = rest_auroc = diff = None
    differs = False
    if not (~inside).any():
        notes.append("every exam has this value: nothing to compare with")
    if _two_classes(ys):
        sub_draws = (metrics.bootstrap(ys, ss, g[inside], n_bootstrap, seed)
                     if n_bootstrap > 0 else None)
        auroc = metrics.estimate(metrics.auroc(ys, ss), sub_draws.auroc[:, 0]
                                 if sub_draws else None, ci_level)
        if _two_classes(yr):
            rest_draws = (metrics.bootstrap(yr, sr, g[~inside], n_bootstrap, seed + 1)
                          if n_bootstrap > 0 else None)
            rest_auroc = metrics.estimate(metrics.auroc(yr, sr), rest_draws.auroc[:, 0]
                                          if rest_draws else None, ci_level)
            d = None
            if sub_draws is not None and rest_draws is not None:
                k = min(len(sub_draws.auroc), len(rest_draws.auroc))
                d = sub_draws.auroc[:k, 0] - rest_draws.auroc[:k, 0]
            diff = metrics.estimate(auroc.estimate - rest_auroc.estimate, d, corrected)
            if diff.ci_low is not None and diff.ci_high is not None and (
                    diff.ci_low > 0 or diff.ci_high < 0):
                differs = True
                warnings.append(
                    f"{where}: AUROC {_fmt(auroc)} is {'lower' if diff.ci_high < 0 else 'higher'}"
                    f" than the other exams' {_fmt(rest_auroc)} (difference "
                    f"{diff.estimate:+.3f}, {corrected:.2%} CI {diff.ci_low:+.3f} to "
                    f"{diff.ci_high:+.3f}, excludes 0)")
    elif (~inside).any():
        notes.append("one class only: no AUROC")
    neg_in, neg_rest = ss[ys == 0], sr[yr == 0]
    higher = p = None
    scores_differ = False
    if len(neg_in) >= min_cases and len(neg_rest) >= min_cases:
        test = mannwhitneyu(neg_in, neg_rest, alternative="two-sided")
        higher = float(test.statistic) / (len(neg_in) * len(neg_rest))
        p = float(test.pvalue)
        if p < p_cut and abs(higher - 0.5) > min_effect:
            scores_differ = True
            warnings.append(
                f"{where}: scores of non-malignant exams run "
                f"{'higher' if higher > 0.5 else 'lower'} than on the other exams (median "
                f"{np.median(neg_in):.3g} vs {np.median(neg_rest):.3g}; an exam here scores "
                f"higher with probability {higher:.2f}; Mann-Whitney p = {p:.2g}): check the "
                f"calibration and operating points for these images")
    elif (~inside).any():
        notes.append(f"fewer than {min_cases} non-malignant exams: scores not compared")
    return SubgroupShift(
        column=name, value=value, n=int(inside.sum()), n_positive=int(ys.sum()), auroc=auroc,
        rest_auroc=rest_auroc, auroc_difference=diff, scores=_summary(ss),
        negative_scores=_summary(neg_in) if len(neg_in) else None,
        rest_negative_scores=_summary(neg_rest) if len(neg_rest) else None,
        higher_than_rest=higher, distribution_p=p, auroc_differs=differs,
        scores_differ=scores_differ, note="; ".join(notes) or None, warnings=warnings)


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
