"""Recompute the reader-study AUROCs pinned in tests/test_hybrid.py, independently of mammocli.

AUROC is the Mann-Whitney U statistic over the positive x negative pairs, divided by their number:
a pair counts 1 when the positive breast scores higher, 1/2 on a tie. Counted here pair by pair
(numpy broadcasting) and checked against scipy's U; nothing from mammocli or scikit-learn.

    python tests/tools/mann_whitney_reference.py ../shared/data/reader_study_720.csv [--json]

Hybrid = w x reader + (1 - w) x model per breast, w = 0.5 (the pinned HYBRID_AUC).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

MODEL = "AI_DMVCNN_POM"
GMIC = "AI_GMIC_top5_POM"
WEIGHT = 0.5


def pair_count_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """(#pairs positive > negative + 1/2 #ties) / #pairs."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    counted = pair_count_auroc(labels, scores)
    pos, neg = scores[labels == 1], scores[labels == 0]
    u = mannwhitneyu(pos, neg, alternative="two-sided").statistic / (pos.size * neg.size)
    if abs(counted - u) > 1e-12:
        raise SystemExit(f"pair count {counted} and scipy's U {u} disagree")
    return counted


def read(path: Path) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    readers = sorted(c for c in rows[0] if c.startswith("Reader") and c.endswith("_POM"))
    labels = np.array([int(float(r["label"])) for r in rows])
    columns = {c: np.array([float(r[c]) for r in rows]) for c in [*readers, MODEL, GMIC]}
    return labels, readers, columns


def compute(path: Path) -> dict[str, object]:
    labels, readers, col = read(path)
    reader_auc = [auroc(labels, col[r]) for r in readers]
    hybrid_auc = [auroc(labels, WEIGHT * col[r] + (1 - WEIGHT) * col[MODEL]) for r in readers]
    averaged = np.mean([col[r] for r in readers], axis=0)
    return {
        "breasts": int(labels.size), "positives": int(labels.sum()), "readers": readers,
        "reader_auroc": reader_auc, "hybrid_auroc": hybrid_auc,
        "mean_reader_auroc": float(np.mean(reader_auc)),
        "mean_hybrid_auroc": float(np.mean(hybrid_auc)),
        "model_auroc": auroc(labels, col[MODEL]), "gmic_auroc": auroc(labels, col[GMIC]),
        "averaged_reader_score_auroc": auroc(labels, averaged),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--json", action="store_true", help="full precision, machine-readable")
    args = parser.parse_args(argv)
    out = compute(args.csv)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['breasts']} breasts, {out['positives']} malignant")
    for name, r, h in zip(out["readers"], out["reader_auroc"],  # type: ignore[call-overload]
                          out["hybrid_auroc"], strict=True):
        print(f"{name}  reader {r:.6f}  hybrid {h:.6f}")
    for key in ("mean_reader_auroc", "mean_hybrid_auroc", "model_auroc", "gmic_auroc",
                "averaged_reader_score_auroc"):
        print(f"{key} {out[key]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
