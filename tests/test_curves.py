"""ROC/PR figures: AUC [CI] in the legend (the numbers of `evaluate`), a bootstrap band, operating
points as marked dots, readers as points, and a perfect curve inside the padded axes."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from PIL import Image

from mammocli.analysis import metrics
from mammocli.analysis.curves import (
    GRID,
    ScoredCases,
    pr_figure,
    reader_points,
    roc_figure,
    roc_pr_pngs,
    summarize,
)
from mammocli.analysis.operating_points import Target, operating_point


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int64)
    return y, 1 / (1 + np.exp(-rng.normal(-1.5 + 1.5 * y, 1.0)))


def _legend(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_legend_holds_the_auc_and_ci_of_the_evaluation_bootstrap() -> None:
    y, s = _data()
    groups = [f"e{i}" for i in range(len(y))]
    summary = summarize(ScoredCases("exam malignant", y, s, groups), n_bootstrap=300, seed=3)
    draws = metrics.bootstrap(y, s, groups, 300, 3)  # what `evaluate` computes
    expected = metrics.estimate(metrics.auroc(y, s), draws.auroc[:, 0])
    assert summary.auroc == expected
    lo, hi = expected.ci_low, expected.ci_high
    assert lo is not None and hi is not None and lo < expected.estimate < hi
    [text] = _legend(roc_figure([summary]))
    assert text == (f"exam malignant: AUC {expected.estimate:.3f} [95% CI {lo:.3f}, {hi:.3f}]")
    ap = metrics.estimate(metrics.auprc(y, s), draws.auprc[:, 0])
    [text] = _legend(pr_figure([summary]))
    assert text.startswith(f"exam malignant: AP {ap.estimate:.3f} [95% CI {ap.ci_low:.3f}, ")


def test_bootstrap_band_surrounds_the_curve() -> None:
    y, s = _data(400)
    summary = summarize(ScoredCases("m", y, s), n_bootstrap=200, seed=0)
    assert summary.roc_band is not None and summary.pr_band is not None
    lo, hi = summary.roc_band
    curve = np.interp(GRID, summary.fpr, summary.tpr)
    inner = (GRID > 0.05) & (GRID < 0.95)
    assert np.all(lo <= hi)
    # the observed curve lies inside its own 95% band almost everywhere, and the band has width
    assert np.mean((lo[inner] <= curve[inner] + 1e-9) & (curve[inner] <= hi[inner] + 1e-9)) > 0.9
    assert np.mean(hi[inner] - lo[inner]) > 0.05
    fig = roc_figure([summary])
    assert any(isinstance(c, PolyCollection) for c in fig.axes[0].collections)  # drawn
    # no bootstrap: no band, the legend shows the AUC alone
    plain = summarize(ScoredCases("m", y, s), n_bootstrap=0)
    assert plain.roc_band is None
    assert _legend(roc_figure([plain])) == [f"m: AUC {plain.auroc.estimate:.3f}"]


def test_a_perfect_curve_lies_inside_the_axes() -> None:
    y = np.array([0] * 10 + [1] * 5)
    s = np.linspace(0, 1, 15)
    summary = summarize(ScoredCases("perfect", y, s), n_bootstrap=50)
    assert summary.auroc.estimate == 1.0
    for fig in (roc_figure([summary]), pr_figure([summary])):
        ax = fig.axes[0]
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        curve = [ln for ln in ax.get_lines() if ln.get_label().startswith("perfect")][0]
        xs, ys = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
        # it runs along x = 0 and y = 1 (the frame of an unpadded plot) ...
        assert xs.min() == 0.0 and ys.max() == 1.0
        # ... and stays strictly inside the axes, so the frame does not hide it
        assert x0 < xs.min() and xs.max() < x1 and y0 < ys.min() and ys.max() < y1


def test_operating_points_and_readers_are_marked() -> None:
    y, s = _data(300)
    op = operating_point(y, s, [str(i) for i in range(len(y))],
                         Target(kind="specificity", value=0.9), "exam", n_bootstrap=100)
    summary = summarize(ScoredCases("exam malignant", y, s, operating_points=[op]),
                        n_bootstrap=100)
    rng = np.random.default_rng(1)
    reads = np.where(rng.random((len(y), 3)) < 0.3 + 0.4 * y[:, None], 0.5, 0.0)
    readers = reader_points(y, reads, ["R1", "R2", "R3"])
    st = metrics.threshold_stats(y, reads[:, 0], 0.25)
    assert readers[0].sensitivity == st.sensitivity and readers[0].specificity == st.specificity
    fig = roc_figure([summary], readers=readers)
    texts = _legend(fig)
    assert f"exam specificity 0.9 (threshold {op.threshold.estimate:.3g})" in texts
    assert "radiologists (3)" in texts and "radiologists' mean" in texts
    ax = fig.axes[0]
    [dot] = [c.lines[0] for c in ax.containers if c.get_label().startswith("exam specificity")]
    assert dot.get_marker() not in ("None", "", None)
    assert np.allclose(dot.get_xydata(), [[1 - op.specificity.estimate, op.sensitivity.estimate]])
    points = [c for c in ax.collections if c.get_label() == "radiologists (3)"][0]
    assert np.allclose(points.get_offsets(), [[1 - r.specificity, r.sensitivity]
                                              for r in readers])
    # on the PR plane the operating point sits at (sensitivity, PPV)
    pr = pr_figure([summary], readers=readers)
    [dot] = [c.lines[0] for c in pr.axes[0].containers
             if c.get_label().startswith("exam specificity")]
    assert op.ppv is not None
    assert np.allclose(dot.get_xydata(), [[op.sensitivity.estimate, op.ppv.estimate]])


def test_pngs_are_images() -> None:
    y, s = _data(120)
    roc, pr = roc_pr_pngs([ScoredCases("m", y, s)], n_bootstrap=30, title="test")
    for png in (roc, pr):
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.size[0] > 300
        assert np.asarray(image.convert("L")).std() > 5  # something is drawn
