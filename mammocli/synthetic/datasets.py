"""Synthetic training data for tests and demos: breast phantoms (`phantoms.phantom`)
with lesion-like masses, their masks, and the CSV manifests of both tasks.

Malignant masses are dense (bright) blobs, benign ones radiolucent (dark) blobs: different
enough for a small network to tell apart after a short training. Not patient data.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..views import LABELS, VIEWS, Side
from .phantoms import phantom, write_png16

NONE, BENIGN, MALIGNANT = "none", "benign", "malignant"


def add_lesion(image: np.ndarray, rng: np.random.Generator, kind: str, *,
               contrast: float = 0.35, radius_fraction: float = 0.07,
               ) -> tuple[np.ndarray, np.ndarray]:
    """A mass inside the tissue of a uint16 phantom; returns (image, mask)."""
    tissue = image > 0
    radius = max(3.0, min(image.shape) * radius_fraction)
    inner = ndimage.binary_erosion(tissue, iterations=int(radius * 1.5) + 1)
    ys, xs = np.nonzero(inner if inner.any() else tissue)
    k = rng.integers(len(ys))
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    distance = np.hypot(yy - ys[k], xx - xs[k])
    profile = np.exp(-(distance / radius) ** 2)
    mask = (profile > 0.5) & tissue
    # Malignant: a dense (bright) mass; benign: a radiolucent (dark, fat-containing) one, as
    # oil cysts and lipomas, which BI-RADS calls benign on sight.
    sign = 1.0 if kind == MALIGNANT else -0.6
    out = image.astype(np.float64) + sign * contrast * 65535 * profile * tissue
    # Tissue stays non-zero: zero is background for the crop and the patch classes.
    return np.where(tissue, np.clip(out, 1, 65535), 0).astype(np.uint16), mask


def write_breast_dataset(root: Path, exams: int, *, shape: tuple[int, int] = (320, 240),
                         seed: int = 0, contrast: float = 0.35, radius_fraction: float = 0.07,
                         p_lesion: float = 0.5) -> Path:
    """`exams` four-view exam folders and `manifest.csv` (one patient per exam). Each breast
    independently has no lesion, a benign or a malignant one (in both its views)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(exams):
        state = {side: (str(rng.choice([BENIGN, MALIGNANT])) if rng.random() < p_lesion
                        else NONE) for side in Side}
        folder = root / f"exam{e:03d}"
        for view in VIEWS:
            facing = Side.RIGHT if view.side is Side.LEFT else Side.LEFT
            image = phantom(shape, rng, facing=facing)
            if state[view.side] != NONE:
                image, _ = add_lesion(image, rng, state[view.side], contrast=contrast,
                                      radius_fraction=radius_fraction)
            write_png16(folder / f"{view.side.letter}_{view.angle.value}.png", image)
        labels = {"left_benign": state[Side.LEFT] == BENIGN,
                  "right_benign": state[Side.RIGHT] == BENIGN,
                  "left_malignant": state[Side.LEFT] == MALIGNANT,
                  "right_malignant": state[Side.RIGHT] == MALIGNANT}
        rows.append({"exam": folder.name, **{k: int(labels[k]) for k in LABELS},
                     "patient": f"p{e:03d}"})
    _write_csv(root / "manifest.csv", ["exam", *LABELS, "patient"], rows)
    return root / "manifest.csv"


def write_patch_dataset(root: Path, images: int, *, shape: tuple[int, int] = (256, 192),
                        seed: int = 0, contrast: float = 0.35,
                        crop_margin: int | None = None) -> Path:
    """Images with one malignant and one benign mass each (sometimes none), their ROI masks,
    and `manifest.csv`. With `crop_margin`, each image (and its masks) is cut to its tissue's
    bounding box plus that margin, as `predict` crops a view before its heatmaps: patches are
    standardised over their whole image, so a model trained on uncropped phantoms (~60 %
    background) sees crops (~20 %) at other intensities and misses their masses."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(images):
        image = phantom(shape, rng, facing=Side.RIGHT if i % 2 else Side.LEFT)
        masks = {}
        for kind in (MALIGNANT, BENIGN):
            if rng.random() < 0.8:
                image, masks[kind] = add_lesion(image, rng, kind, contrast=contrast,
                                                radius_fraction=0.05)
        if crop_margin is not None:
            box = _tissue_box(image, crop_margin)
            image = image[box]
            masks = {kind: mask[box] for kind, mask in masks.items()}
        name = f"img{i:03d}"
        write_png16(root / f"{name}.png", image)
        row: dict[str, object] = {"image": f"{name}.png", "benign_mask": "", "malignant_mask": "",
               "patient": f"p{i:03d}"}
        for kind, mask in masks.items():
            write_png16(root / f"{name}_{kind}.png", mask.astype(np.uint16) * 65535)
            row[f"{kind}_mask"] = f"{name}_{kind}.png"
        rows.append(row)
    _write_csv(root / "manifest.csv", ["image", "benign_mask", "malignant_mask", "patient"], rows)
    return root / "manifest.csv"


def _tissue_box(image: np.ndarray, margin: int) -> tuple[slice, slice]:
    ys, xs = np.nonzero(image)
    return (slice(max(int(ys.min()) - margin, 0), int(ys.max()) + margin + 1),
            slice(max(int(xs.min()) - margin, 0), int(xs.max()) + margin + 1))


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
