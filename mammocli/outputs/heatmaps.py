"""Writing heatmaps a person can look at: arrays (.npz), PNG overlays, and a JSON index.

The DMV-CNN writes its patch-classifier heatmaps (`Export.HEATMAPS`), GMIC its saliency maps
and the per-image figure of `outputs.gmic_figure` (`Export.SALIENCY`); both into one folder
per exam with the same index layout (`heatmaps.json`).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from ..preprocess.orientation import to_canonical
from ..preprocess.prepare import PreparedImage
from ..views import View
from ..vocabulary import Export, Family
from .files import atomic_write_bytes, atomic_write_text
from .schema import printable

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

    from ..families.gmic_inference import ImageSaliency
    from ..inference.predictor import ExamOutput

DPI = 100
PANEL_PX = 600  # height of each panel of a DMV-CNN overlay; the width follows the image
ALPHA_FULL_AT = 0.7  # heat from which an overlay is at its most opaque
ALPHA_MAX = 0.85


def stored_orientation(heatmap: np.ndarray, image: PreparedImage) -> np.ndarray:
    """Map a canonical heatmap back onto the stored (unflipped) cropped image."""
    return np.ascontiguousarray(to_canonical(heatmap, image.orientation))


def _stem(view: str, relative: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(relative).with_suffix("").as_posix())
    return f"{view}__{name.lstrip('.')[:100]}"


def transparent_low(name: str) -> Colormap:
    """Colour map `name` with alpha rising with the value: 0 is fully transparent (the tissue
    shows unveiled where the model saw nothing), ALPHA_MAX from ALPHA_FULL_AT up."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    colours = colormaps[name](np.linspace(0, 1, 256))
    colours[:, 3] = np.clip(np.linspace(0, 1, 256) / ALPHA_FULL_AT, 0, 1) * ALPHA_MAX
    return ListedColormap(colours, name=f"{name}_ramp")


def grey_limits(image: np.ndarray) -> tuple[float, float]:
    """Display range of a mammogram: 0 to the tissue's 99.5th percentile."""
    tissue = image[image > 0]
    return 0.0, float(np.percentile(tissue, 99.5)) if tissue.size else 1.0


def fit(array: np.ndarray, shape: tuple[int, int], *, smooth: bool = False) -> np.ndarray:
    """`array` resampled to `shape` (rows, cols) as float32: box-averaged when shrinking (no
    aliasing of a 3000-pixel mammogram), bilinear with `smooth`. Drawn then pixel for pixel,
    every panel of a figure shows exactly the same pixels under its overlay."""
    from PIL import Image

    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.BOX
    picture = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
    return np.asarray(picture.resize((shape[1], shape[0]), resample=resample), np.float32)


def write_heatmaps(output: ExamOutput, exam_id: str, target: Path, *, overlays: bool = True,
                   ) -> Path:
    """Write into the folder `target` (the caller names it, see `sinks.HeatmapFolders`) what
    the family exported: per image `<view>__<file>.npz`, `<view>__<file>.png`, and
    `heatmaps.json`. DMV-CNN heatmaps, else GMIC saliency maps (`write_saliency`)."""
    saliency = output.exports.get(Export.SALIENCY)
    if saliency is not None:
        return write_saliency(output, cast("Mapping[View, Sequence[ImageSaliency]]", saliency),
                              exam_id, target, figures=overlays)
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
    _write_index(target, exam_id, Family.DMV_CNN, index)
    return target


def _write_index(target: Path, exam_id: str, family: Family, images: Sequence[object],
                 **extra: object) -> None:
    doc = {"exam_id": printable(exam_id), "family": family.value, **extra, "images": images}
    atomic_write_text(target / "heatmaps.json",
                      json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


SALIENCY_NOTE = (
    "benign/malignant: the mean of the members' saliency maps (one member: its own), "
    "member_<i>: member i's (2, h, w) benign and malignant maps; float32 in (0, 1), one cell "
    "per 64 x 64 window pixels, columns in the stored image's direction; the grid covers "
    "saliency_window = [top, bottom, left, right] of the stored image (it may reach past the "
    "image into zero padding). The PNG shows the first member's maps and patches with the "
    "run's prediction (y_fusion).")


def write_saliency(output: ExamOutput, saliency: Mapping[View, Sequence[ImageSaliency]],
                   exam_id: str, target: Path, *, figures: bool = True) -> Path:
    """GMIC: per image its saliency arrays (.npz), the `gmic_figure` PNG, and the index."""
    from .gmic_figure import exported_result, figure_png, window_extent

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    index = []
    for view, images in output.prepared.items():
        for image, maps in zip(images, saliency[view], strict=True):
            stem = _stem(view.value, image.source.relative)
            stacked = np.stack([m.saliency for m in maps.members.values()])
            mean = stacked.mean(axis=0, dtype=np.float32) if len(stacked) > 1 else stacked[0]
            arrays = {"benign": mean[0], "malignant": mean[1],
                      **{f"member_{m}": one.saliency for m, one in maps.members.items()}}
            buf = io.BytesIO()
            stored = {k: np.ascontiguousarray(v[..., ::-1] if image.orientation.needs_flip
                                              else v, dtype=np.float32)
                      for k, v in arrays.items()}
            np.savez_compressed(buf, **stored)  # type: ignore[arg-type]  # stubs: named arrays
            atomic_write_bytes(target / f"{stem}.npz", buf.getvalue())
            result = exported_result(maps)
            if figures:
                atomic_write_bytes(target / f"{stem}.png", figure_png(image, maps.window, result))
            left, right, bottom, top = window_extent(image, maps.window)
            index.append({
                "view": view.value,
                "source": printable(image.source.relative),
                "arrays": f"{stem}.npz",
                "overlay": f"{stem}.png" if figures else None,
                "crop_window": list(image.crop.window_location),
                "flipped": image.orientation.needs_flip,
                "orientation_from": image.orientation.decided_by,
                "best_center": list(image.best_center),
                "saliency_window": [int(top), int(bottom), int(left), int(right)],
                "saliency_shape": list(mean.shape[1:]),
                "members": list(maps.members),
                "figure": result.source,
                "probabilities": {"benign": maps.probabilities[0],
                                  "malignant": maps.probabilities[1]},
                "benign_max": float(mean[0].max()),
                "malignant_max": float(mean[1].max()),
            })
    _write_index(target, exam_id, Family.GMIC, index, maps=SALIENCY_NOTE)
    return target


def _overlay_png(image: np.ndarray, benign: np.ndarray, malignant: np.ndarray,
                 title: str) -> bytes:
    """image | benign | malignant, three panels of one size whose shape follows the image's,
    the heat transparent where low, each colour bar labelled."""
    # A Figure with its own Agg canvas: no pyplot state, and the caller's backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = image.shape
    aspect = min(max(width / max(height, 1), 0.25), 2.0)  # keeps odd shapes on a usable page
    panel_w = round(PANEL_PX * aspect)
    gap, top, bottom = 16, 40, 70  # pixels: between panels, title, colour bars
    fig_w, fig_h = 3 * panel_w + 4 * gap, PANEL_PX + top + bottom
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    vmin, vmax = grey_limits(image)
    grey = fit(image, (PANEL_PX, panel_w))
    panels = [("image", None, None, ""), ("benign", benign, "Greens", "P(benign) per patch"),
              ("malignant", malignant, "Reds", "P(malignant) per patch")]
    for i, (name, heat, cmap, label) in enumerate(panels):
        x0 = gap + i * (panel_w + gap)
        ax = fig.add_axes((x0 / fig_w, bottom / fig_h, panel_w / fig_w, PANEL_PX / fig_h))
        ax.imshow(grey, cmap="gray", vmin=vmin, vmax=vmax, aspect="auto",
                  interpolation="nearest")
        if heat is not None and cmap is not None:
            shown = ax.imshow(fit(heat, grey.shape, smooth=True), cmap=transparent_low(cmap),
                              vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            cax = fig.add_axes(((x0 + 0.1 * panel_w) / fig_w, 28 / fig_h,
                                0.8 * panel_w / fig_w, 12 / fig_h))
            bar = fig.colorbar(shown, cax=cax, orientation="horizontal")
            bar.set_label(label, fontsize=9)
            bar.ax.tick_params(labelsize=8)
        ax.set_title(f"{title} {name}", fontsize=11)
        ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()
