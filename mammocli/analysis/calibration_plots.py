"""Reliability diagrams as PNG bytes (matplotlib object API on an Agg canvas, no pyplot)."""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure

from .calibration import ReliabilityBin
from .curves import figure_png


def reliability_png(curves: Mapping[str, list[ReliabilityBin]], title: str) -> bytes:
    """Observed fraction malignant against mean predicted probability, one line per curve,
    with the Wilson 95% interval of each bin; marker area grows with the bin's count; below,
    how many cases fall in each bin (most screening scores sit in the lowest bins)."""
    fig = Figure(figsize=(5, 6.5))
    ax, counts = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1, label="perfect")
    width = 0.8 / max(1, len(curves))
    for i, (name, bins) in enumerate(curves.items()):
        used = [b for b in bins if b.n > 0]
        x = [b.mean_predicted or 0.0 for b in used]
        y = [b.observed or 0.0 for b in used]
        low = [max(0.0, (b.observed or 0.0) - (b.observed_ci_low or 0.0)) for b in used]
        high = [max(0.0, (b.observed_ci_high or 0.0) - (b.observed or 0.0)) for b in used]
        total = sum(b.n for b in used) or 1
        line = ax.errorbar(x, y, yerr=[low, high], marker="o", markersize=4, capsize=2,
                           label=name)
        ax.scatter(x, y, s=[20 + 400 * b.n / total for b in used], alpha=0.3,
                   color=line[0].get_color())
        edges = [b.low for b in bins]
        step = (bins[0].high - bins[0].low) if bins else 0.1
        counts.bar([e + step * (0.1 + i * width) for e in edges], [b.n for b in bins],
                   width=step * width, align="edge", color=line[0].get_color())
    ax.set(ylabel="observed fraction malignant", title=title, xlim=(0, 1), ylim=(-0.02, 1.02))
    ax.legend(loc="upper left", fontsize="small")
    counts.set(xlabel="predicted probability", ylabel="cases", yscale="symlog")
    fig.tight_layout()
    return figure_png(fig)
