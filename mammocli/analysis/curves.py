"""ROC and precision-recall figures meant to be read at a glance.

Each curve's legend entry carries its AUC (ROC) or average precision (PR) with the percentile
bootstrap CI; a shaded band shows where the curve lies in 95% of resamples; operating points
(from operating_points.py) are marked dots with their CIs as error bars; radiologists' reads are
points beside the model's curve (as in Wu et al. 2019, figure 4); the axes are padded so that a
perfect curve (along the frame) stays visible.

The AUC CIs use `metrics.bootstrap` with the same groups and seed as `evaluate`, so the legend
shows the numbers of the evaluation table. Bands come from the same resampling scheme (exams drawn
with replacement): the sensitivity of each resample at a fixed grid of false-positive rates (ROC),
the precision at a fixed grid of recalls (PR, at the first threshold reaching that recall).

Matplotlib object API only (Figure + Agg canvas): no pyplot state, no display needed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

from . import metrics
from .metrics import Estimate
from .operating_points import OperatingPoint

FloatArray = NDArray[np.float64]
GRID = np.linspace(0.0, 1.0, 201)
PAD = 0.02  # axis padding: a perfect curve runs along x=0 and y=1


@dataclass(frozen=True)
class ScoredCases:
    """One curve: per-case labels and scores; `groups` holds each case's resampling unit (its
    exam; None: every case on its own); the operating points measured on these cases."""

    name: str
    y: NDArray[np.integer]
    scores: FloatArray
    groups: Sequence[str] | None = None
    operating_points: Sequence[OperatingPoint] = ()


@dataclass(frozen=True)
class ReaderPoint:
    """A radiologist's read on the same cases: where it sits on the ROC and PR planes."""

    name: str
    sensitivity: float
    specificity: float
    ppv: float | None  # None when the reader recalled nothing


@dataclass(frozen=True)
class CurveSummary:
    """What the figures draw for one curve: the curve itself, its area with CI, and bands."""

    name: str
    n: int
    n_positive: int
    fpr: FloatArray
    tpr: FloatArray
    recall: FloatArray
    precision: FloatArray
    auroc: Estimate
    auprc: Estimate
    roc_band: tuple[FloatArray, FloatArray] | None  # sensitivity low/high on GRID (of FPR)
    pr_band: tuple[FloatArray, FloatArray] | None  # precision low/high on GRID (of recall)
    operating_points: Sequence[OperatingPoint] = field(default=())


def _points(y: NDArray[np.integer], s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """TP and FP counts at each distinct threshold (descending), starting from (0, 0)."""
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    tp = np.cumsum(y[order], dtype=np.float64)
    fp = np.arange(1, len(s) + 1, dtype=np.float64) - tp
    ends = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))  # last of each tie block
    return np.concatenate([[0.0], tp[ends]]), np.concatenate([[0.0], fp[ends]])


def _roc(tp: FloatArray, fp: FloatArray, n1: float, n0: float) -> tuple[FloatArray, FloatArray]:
    return fp / n0, tp / n1


def _pr(tp: FloatArray, fp: FloatArray, n1: float) -> tuple[FloatArray, FloatArray]:
    """Recall and precision at each threshold that flags a positive, from recall 0 at the
    precision of the first of them (so that the step starts at the y axis)."""
    # thresholds that flag negatives only have recall 0 and no meaningful precision: drop them
    keep = tp > 0
    tp, fp = tp[keep], fp[keep]
    recall = np.concatenate([[0.0], tp / n1])
    precision = tp / (tp + fp)
    return recall, np.concatenate([precision[:1], precision])


def _tpr_on_grid(fpr: FloatArray, tpr: FloatArray) -> FloatArray:
    # the ROC is piecewise linear between thresholds; at a vertical segment take its top
    top = np.append(fpr[1:] != fpr[:-1], True)
    return np.asarray(np.interp(GRID, fpr[top], tpr[top]), dtype=np.float64)


def _precision_on_grid(recall: FloatArray, precision: FloatArray) -> FloatArray:
    idx = np.searchsorted(recall, GRID, side="left")  # first threshold reaching each recall
    return precision[np.minimum(idx, len(precision) - 1)]


def summarize(cases: ScoredCases, n_bootstrap: int = metrics.DEFAULT_RESAMPLES, seed: int = 0,
              ci_level: float = metrics.DEFAULT_CI_LEVEL) -> CurveSummary:
    """The curve, its AUROC/AUPRC with bootstrap CIs, and the bands, for one set of cases."""
    y = np.asarray(cases.y, dtype=np.int64)
    s = np.asarray(cases.scores, dtype=np.float64)
    groups = list(cases.groups) if cases.groups is not None else [str(i) for i in range(len(y))]
    n1 = float(y.sum())
    n0 = float(len(y) - n1)
    point_roc = metrics.auroc(y, s, cases.name)  # one class only: a located InputError
    point_pr = metrics.auprc(y, s, cases.name)
    tp, fp = _points(y, s)
    fpr, tpr = _roc(tp, fp, n1, n0)
    recall, precision = _pr(tp, fp, n1)
    roc_band = pr_band = None
    auroc, auprc = Estimate(estimate=point_roc), Estimate(estimate=point_pr)
    if n_bootstrap > 0:
        draws = metrics.bootstrap(y, s, groups, n_bootstrap, seed)
        auroc = metrics.estimate(point_roc, draws.auroc[:, 0], ci_level)
        auprc = metrics.estimate(point_pr, draws.auprc[:, 0], ci_level)
        group_ids = np.unique(np.asarray(groups), return_inverse=True)[1].astype(np.int64)
        tprs, precs = [], []
        for rows in metrics._resample_rows(group_ids, n_bootstrap, seed, chunk=256):
            for r in rows:
                yr = y[r]
                m1 = float(yr.sum())
                if m1 in (0.0, float(len(yr))):
                    continue  # one class only: no curve (dropped, as the AUC draws are)
                tp_r, fp_r = _points(yr, s[r])
                f, t = _roc(tp_r, fp_r, m1, len(yr) - m1)
                tprs.append(_tpr_on_grid(f, t))
                rc, pr = _pr(tp_r, fp_r, m1)
                precs.append(_precision_on_grid(rc, pr))
        if tprs:
            alpha = (1.0 - ci_level) / 2.0
            q = [alpha, 1.0 - alpha]
            lo, hi = np.quantile(np.array(tprs), q, axis=0)
            roc_band = (lo, hi)
            lo, hi = np.quantile(np.array(precs), q, axis=0)
            pr_band = (lo, hi)
    return CurveSummary(name=cases.name, n=len(y), n_positive=int(n1), fpr=fpr, tpr=tpr,
                        recall=recall, precision=precision, auroc=auroc, auprc=auprc,
                        roc_band=roc_band, pr_band=pr_band,
                        operating_points=tuple(cases.operating_points))


def reader_points(y: NDArray[np.integer], reader_scores: FloatArray, names: Sequence[str],
                  recall_above: float = 0.0) -> list[ReaderPoint]:
    """Each reader's sensitivity, specificity and PPV when a case counts as recalled with a
    score above `recall_above` (for probabilities of malignancy: any suspicion at all).

    y: (n,) labels; reader_scores: (n, readers) on the same cases (exam or breast level)."""
    y = np.asarray(y, dtype=np.int64)
    r = np.asarray(reader_scores, dtype=np.float64)
    out = []
    for j, name in enumerate(names):
        st = metrics.threshold_stats(y, r[:, j], float(np.nextafter(recall_above, np.inf)))
        flagged = st.tp + st.fp
        out.append(ReaderPoint(name=name, sensitivity=st.sensitivity or 0.0,
                               specificity=st.specificity or 0.0,
                               ppv=st.tp / flagged if flagged else None))
    return out


def _ci_text(e: Estimate) -> str:
    if e.ci_low is None or e.ci_high is None:
        return f"{e.estimate:.3f}"
    return f"{e.estimate:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"


def legend_label(name: str, what: str, e: Estimate, ci_level: float) -> str:
    """e.g. "exam malignant: AUC 0.876 [95% CI 0.830, 0.915]"."""
    if e.ci_low is None or e.ci_high is None:
        return f"{name}: {what} {e.estimate:.3f}"
    return (f"{name}: {what} {e.estimate:.3f} [{ci_level:.0%} CI {e.ci_low:.3f}, "
            f"{e.ci_high:.3f}]")


def _frame(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(-PAD, 1 + PAD),
           ylim=(-PAD, 1 + PAD), aspect="equal")
    ax.grid(True, linewidth=0.4, alpha=0.5)


def _op_label(op: OperatingPoint) -> str:
    return f"{op.name} (threshold {op.threshold.estimate:.3g})"


def _err(e: Estimate | None, flip: bool = False) -> list[list[float]] | None:
    if e is None or e.ci_low is None or e.ci_high is None:
        return None
    # CIs that re-choose a threshold need not hold the point estimate: clip at 0
    low, high = max(0.0, e.estimate - e.ci_low), max(0.0, e.ci_high - e.estimate)
    return [[high], [low]] if flip else [[low], [high]]  # flip: plotted as 1 - value


def roc_figure(curves: Sequence[CurveSummary], title: str = "ROC",
               readers: Sequence[ReaderPoint] = (), ci_level: float = metrics.DEFAULT_CI_LEVEL
               ) -> Figure:
    fig = Figure(figsize=(6.4, 6.4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    markers = iter("osD^vP*")
    for c in curves:
        (line,) = ax.plot(c.fpr, c.tpr, linewidth=2, zorder=3,
                          label=legend_label(c.name, "AUC", c.auroc, ci_level))
        if c.roc_band is not None:
            ax.fill_between(GRID, c.roc_band[0], c.roc_band[1], color=line.get_color(),
                            alpha=0.18, linewidth=0, zorder=2)
        for op in c.operating_points:
            spec, sens = op.specificity, op.sensitivity
            ax.errorbar([1.0 - spec.estimate], [sens.estimate], xerr=_err(spec, flip=True),
                        yerr=_err(sens), marker=next(markers, "o"), markersize=8,
                        markeredgecolor="black", color=line.get_color(), capsize=3,
                        linestyle="none", zorder=5, label=_op_label(op))
    _readers(ax, [(1.0 - r.specificity, r.sensitivity) for r in readers])
    _frame(ax, "1 - specificity (false-positive rate)", "sensitivity", title)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def pr_figure(curves: Sequence[CurveSummary], title: str = "precision-recall",
              readers: Sequence[ReaderPoint] = (), ci_level: float = metrics.DEFAULT_CI_LEVEL
              ) -> Figure:
    fig = Figure(figsize=(6.4, 6.4))
    ax = fig.add_subplot()
    markers = iter("osD^vP*")
    for c in curves:
        (line,) = ax.step(c.recall, c.precision, where="pre", linewidth=2, zorder=3,
                          label=legend_label(c.name, "AP", c.auprc, ci_level))
        ax.axhline(c.n_positive / c.n, linestyle=":", color=line.get_color(), linewidth=1)
        if c.pr_band is not None:
            ax.fill_between(GRID, c.pr_band[0], c.pr_band[1], color=line.get_color(),
                            alpha=0.18, linewidth=0, step="pre", zorder=2)
        for op in c.operating_points:
            if op.ppv is None:
                continue  # nothing flagged: no precision
            ax.errorbar([op.sensitivity.estimate], [op.ppv.estimate],
                        xerr=_err(op.sensitivity), yerr=_err(op.ppv),
                        marker=next(markers, "o"), markersize=8, markeredgecolor="black",
                        color=line.get_color(), capsize=3, linestyle="none", zorder=5,
                        label=_op_label(op))
    _readers(ax, [(r.sensitivity, r.ppv) for r in readers if r.ppv is not None])
    _frame(ax, "recall (sensitivity)", "precision (PPV)", title)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def _readers(ax: Axes, xy: list[tuple[float, float]]) -> None:
    if not xy:
        return
    x, y = zip(*xy, strict=True)
    ax.scatter(x, y, marker="x", color="black", s=36, zorder=4,
               label=f"radiologists ({len(xy)})")
    ax.scatter([float(np.mean(x))], [float(np.mean(y))], marker="*", s=160, color="gold",
               edgecolors="black", zorder=6, label="radiologists' mean")


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    FigureCanvasAgg(fig)  # attaches an Agg canvas: works without a display
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def roc_pr_pngs(cases: Sequence[ScoredCases], readers: Sequence[ReaderPoint] = (),
                n_bootstrap: int = metrics.DEFAULT_RESAMPLES, seed: int = 0,
                ci_level: float = metrics.DEFAULT_CI_LEVEL, title: str = ""
                ) -> tuple[bytes, bytes]:
    """ROC and PR figures as PNG bytes: the one call `evaluate --plots` and `hybrid` need."""
    summaries = [summarize(c, n_bootstrap, seed, ci_level) for c in cases]
    prefix = f"{title}: " if title else ""
    return (figure_png(roc_figure(summaries, f"{prefix}ROC", readers, ci_level)),
            figure_png(pr_figure(summaries, f"{prefix}precision-recall", readers, ci_level)))
