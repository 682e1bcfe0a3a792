"""Writing heatmaps a person can look at: arrays (.npz), PNG overlays, and a JSON index."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..preprocess.orientation import to_canonical
from ..preprocess.prepare import PreparedImage
from .files import atomic_write_bytes, atomic_write_text
from .schema import printable

if TYPE_CHECKING:
    from ..inference.predictor import ExamOutput


def stored_orientation(heatmap: np.ndarray, image: PreparedImage) -> np.ndarray:
    """Map a canonical heatmap back onto the stored (unflipped) cropped image."""
    return np.ascontiguousarray(to_canonical(heatmap, image.orientation))


def _stem(view: str, relative: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(relative).with_suffix("").as_posix())
    return f"{view}__{name.lstrip('.')[:100]}"


def write_heatmaps(output: ExamOutput, exam_id: str, target: Path, *, overlays: bool = True,
                   ) -> Path:
    """Write into the folder `target` (the caller names it, see `sinks.HeatmapFolders`): per
    image `<view>__<file>.npz` (benign, malignant, aligned with the cropped stored image),
    `<view>__<file>.png` overlays, and `heatmaps.json`."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    index = []
    for view, images in output.prepared.items():
        for i, image in enumerate(images):
            maps = output.heatmaps[view][i]
            benign = stored_orientation(maps.benign, image)
            malignant = stored_orientation(maps.malignant, image)
            cropped = stored_orientation(image.pixels, image)
            stem = _stem(view.value, image.source.relative)
            buf = io.BytesIO()
            np.savez_compressed(buf, benign=benign, malignant=malignant)
            atomic_write_bytes(target / f"{stem}.npz", buf.getvalue())
            if overlays:
                atomic_write_bytes(target / f"{stem}.png", _overlay_png(cropped, benign, malignant,
                                                                       f"{view.value}"))
            index.append({
                "view": view.value,
                "source": printable(image.source.relative),
                "arrays": f"{stem}.npz",
                "overlay": f"{stem}.png" if overlays else None,
                "crop_window": list(image.crop.window_location),
                "flipped": image.orientation.needs_flip,
                "orientation_from": image.orientation.decided_by,
                "best_center": list(image.best_center),
                "patches": maps.patches,
                "benign_max": float(benign.max()),
                "malignant_max": float(malignant.max()),
            })
    atomic_write_text(target / "heatmaps.json", json.dumps({"exam_id": printable(exam_id),
                                                           "images": index},
                                                          indent=2, ensure_ascii=False) + "\n")
    return target


def _overlay_png(image: np.ndarray, benign: np.ndarray, malignant: np.ndarray,
                 title: str) -> bytes:
    # A Figure with its own Agg canvas: no pyplot state, and the caller's backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    panels = [("image", None, None), ("benign", benign, "Greens"),
              ("malignant", malignant, "Reds")]
    for ax, (name, heat, cmap) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap="gray")
        if heat is not None:
            shown = ax.imshow(np.ma.masked_less(heat, 0.01), cmap=cmap, alpha=0.55, vmin=0, vmax=1)
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(f"{title} {name}")
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
