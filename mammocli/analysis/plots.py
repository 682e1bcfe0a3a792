"""ROC and precision-recall curves as PNG bytes (matplotlib, Agg canvas, no pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray
from sklearn.metrics import precision_recall_curve, roc_curve

Curve = tuple[NDArray[np.int64], NDArray[np.float64]]  # (labels, scores)


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)  # attaches an Agg canvas: works without a display
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def roc_png(curves: Mapping[str, Curve], title: str) -> bytes:
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _png(fig)


def pr_png(curves: Mapping[str, Curve], title: str) -> bytes:
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for name, (y, s) in curves.items():
        precision, recall, _ = precision_recall_curve(y, s)
        ax.step(recall, precision, where="post", label=name)
        ax.axhline(float(np.mean(y)), linestyle=":", color="grey", linewidth=1)  # chance level
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return _png(fig)
