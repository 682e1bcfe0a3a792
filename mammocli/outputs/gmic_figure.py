"""A GMIC result a reader can check, per image: image | benign saliency | malignant saliency,
with the six patches GMIC looked at (labelled with their attention weights), the crop and the
network window outlined, in the stored (original, unflipped) image's coordinates.

A fixed 1600 x 1000 pixel PNG rather than the authors' 11,600-pixel strip. Matplotlib's object
API only (Figure + Agg canvas): no pyplot state, no display, safe in threads and workers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..families.gmic_inference import GMICEnsembleOutput, ImageSaliency, patch_boxes
from ..models.gmic import GMICOutput
from ..preprocess.gmic import GMICWindow
from ..preprocess.prepare import PreparedImage
from .files import atomic_write_bytes
from .schema import printable

FIGURE_INCHES = (16.0, 10.0)
DPI = 100  # -> 1600 x 1000 pixels
FIGURE_PIXELS = (int(FIGURE_INCHES[1] * DPI), int(FIGURE_INCHES[0] * DPI))  # (height, width)
BOX_COLOUR = "#ffd400"
NOTICE = "Research use only: not a medical device. Saliency is not a segmentation."


@dataclass(frozen=True)
class GMICImageResult:
    """What the figure shows for one image."""

    saliency: np.ndarray  # (2, h, w) benign, malignant over the network window
    locations: torch.Tensor  # (K, 2) upper-left window pixels of the patches
    attention: np.ndarray  # (K,) the patches' attention weights
    probabilities: tuple[float, float]  # benign, malignant (y_fusion)
    source: str  # e.g. "ensemble of members 1-5; maps and patches: member 1"


def image_result(output: GMICOutput | GMICEnsembleOutput, index: int,
                 member: int | None = None) -> GMICImageResult:
    """Image `index` of a member's or the ensemble's output. For the ensemble, the prediction
    is the ensemble's; maps and patches are one member's (each member retrieves its own
    patches): `member`, default the first."""
    if isinstance(output, GMICEnsembleOutput):
        chosen = member if member is not None else next(iter(output.members))
        one = output.members[chosen]
        names = ", ".join(str(m) for m in output.members)
        source = (f"ensemble of member(s) {names}; maps and patches: member {chosen}"
                  if len(output.members) > 1 else f"member {chosen}")
        fusion = output.y_fusion[index]
    else:
        one = output
        source = f"member {member}" if member is not None else "one member"
        fusion = output.y_fusion[index]
    return GMICImageResult(
        saliency=one.saliency[index].detach().float().cpu().numpy(),
        locations=one.patch_locations[index],
        attention=one.attention[index].detach().float().cpu().numpy(),
        probabilities=(float(fusion[0]), float(fusion[1])),
        source=source)


def exported_result(saliency: ImageSaliency, member: int | None = None) -> GMICImageResult:
    """What the figure shows from the family's export (`Export.SALIENCY`): the prediction of
    the run's primary variant; maps and patches of `member`, default the first run."""
    chosen = member if member is not None else next(iter(saliency.members))
    maps = saliency.members[chosen]
    names = ", ".join(str(m) for m in saliency.members)
    source = (f"ensemble of members {names}; maps and patches: member {chosen}"
              if len(saliency.members) > 1 else f"member {chosen}")
    return GMICImageResult(saliency=maps.saliency, locations=maps.locations,
                           attention=maps.attention, probabilities=saliency.probabilities,
                           source=source)


def window_extent(image: PreparedImage, window: GMICWindow) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of the network window in stored-image pixels (it may reach
    past the image into the zero padding)."""
    return _window_extent(image, window)


def _window_extent(image: PreparedImage, window: GMICWindow) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of the network window in stored-image pixels, for imshow."""
    top, bottom, left, right = window.record.borders_final
    rows = (top - window.pads[0], bottom - window.pads[0])
    width = image.pixels.shape[1]
    cols = (width - right, width - left) if image.orientation.needs_flip else (left, right)
    crop_top, _, crop_left, _ = image.crop.window_location
    return (cols[0] + crop_left, cols[1] + crop_left, rows[1] + crop_top, rows[0] + crop_top)


def _stored(pixels: np.ndarray, image: PreparedImage) -> np.ndarray:
    return pixels[..., ::-1] if image.orientation.needs_flip else pixels


def saliency_colormap(name: str) -> Colormap:
    """`name` with an alpha ramp: transparent at 0 (the image shows through where GMIC saw
    nothing), 0.85 opaque from 0.7 up."""
    from matplotlib import colormaps

    colours = colormaps[name](np.linspace(0, 1, 256))
    colours[:, 3] = np.clip(np.linspace(0, 1, 256) / 0.7, 0, 1) * 0.85
    return ListedColormap(colours, name=f"{name}_ramp")


def build_figure(image: PreparedImage, window: GMICWindow, result: GMICImageResult, *,
                 original: np.ndarray | None = None) -> Figure:
    """The figure, not yet rendered (its artists can be inspected). `original`: the stored
    image before cropping, to show it whole; by default the cropped image is shown in place."""
    fig = Figure(figsize=FIGURE_INCHES, dpi=DPI)
    FigureCanvasAgg(fig)
    crop_top, crop_bottom, crop_left, crop_right = image.crop.window_location
    if original is not None:
        shown, extent = original, (0, original.shape[1], original.shape[0], 0)
    else:
        shown = _stored(image.pixels, image)
        extent = (crop_left, crop_right, crop_bottom, crop_top)
    tissue = shown[shown > 0]
    vmax = float(np.percentile(tissue, 99.5)) if tissue.size else 1.0
    maps_extent = _window_extent(image, window)
    boxes = patch_boxes(image, window, result.locations)
    # Limits: what was shown plus the network window (it may reach into the padding).
    x0, x1 = min(extent[0], maps_extent[0]), max(extent[1], maps_extent[1])
    y0, y1 = min(extent[3], maps_extent[3]), max(extent[2], maps_extent[2])
    # Fixed panel boxes, colourbars in their own axes below: the three panels get one size.
    axes = [fig.add_axes((0.02 + 0.33 * i, 0.15, 0.30, 0.72)) for i in range(3)]
    panels = (("image, patches by attention", None, None),
              ("benign saliency", 0, "Greens"), ("malignant saliency", 1, "Reds"))
    for i, (ax, (title, channel, cmap)) in enumerate(zip(axes, panels, strict=True)):
        ax.imshow(shown, cmap="gray", vmin=0, vmax=vmax, extent=extent, interpolation="antialiased")
        ax.set_facecolor("black")
        if channel is not None and cmap is not None:
            heat = _stored(result.saliency[channel], image)
            layer = ax.imshow(heat, cmap=saliency_colormap(cmap), vmin=0, vmax=1,
                              extent=maps_extent, interpolation="bilinear")
            bar = fig.colorbar(layer, cax=fig.add_axes((0.06 + 0.33 * i, 0.09, 0.22, 0.018)),
                               orientation="horizontal")
            bar.set_label(f"{title.split()[0]} saliency (0 = none, 1 = highest)")
        _outlines(ax, (crop_left, crop_right, crop_bottom, crop_top), maps_extent)
        _boxes(ax, boxes, result.attention, labelled=channel is None)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        ax.set_title(title, fontsize=13)
        ax.set_xticks([])
        ax.set_yticks([])
    benign, malignant = result.probabilities
    fig.suptitle(f"GMIC {image.view.value}  {printable(image.source.relative)}:  "
                 f"benign {benign:.3f}   malignant {malignant:.3f}", fontsize=16)
    fig.text(0.5, 0.925, f"y_fusion, {result.source}; boxes: the {len(boxes)} patches "
             "retrieved, labelled rank: attention weight", ha="center", fontsize=11)
    fig.text(0.5, 0.02, NOTICE, ha="center", fontsize=12, color="#b00000", gid="notice")
    return fig


def _outlines(ax: Axes, crop: tuple[float, float, float, float],
              maps: tuple[float, float, float, float]) -> None:
    for (left, right, bottom, top), style, colour, name in (
            (crop, "--", "white", "crop"), (maps, ":", "#40c0ff", "GMIC window")):
        ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False,
                               linestyle=style, linewidth=1.2, edgecolor=colour,
                               gid=f"outline-{name}", label=name))


def _boxes(ax: Axes, boxes: np.ndarray, attention: np.ndarray, *, labelled: bool) -> None:
    """Boxes (top, bottom, left, right) in selection order; the label is the selection rank and
    the attention weight. A patch lying wholly in the padding has no area and is not drawn."""
    for k, (top, bottom, left, right) in enumerate(boxes.tolist()):
        if bottom <= top or right <= left:
            continue
        ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False,
                               linewidth=2.0 if labelled else 1.0, edgecolor=BOX_COLOUR,
                               gid=f"patch-{k}"))
        if labelled:
            ax.text(left, top, f"{k + 1}: {attention[k]:.2f}", color="black", fontsize=9,
                    va="bottom", ha="left", gid=f"patch-label-{k}",
                    bbox={"facecolor": BOX_COLOUR, "edgecolor": "none", "pad": 1.5})


def render_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def figure_png(image: PreparedImage, window: GMICWindow, result: GMICImageResult, *,
               original: np.ndarray | None = None) -> bytes:
    return render_png(build_figure(image, window, result, original=original))


def write_gmic_figure(path: Path, image: PreparedImage, window: GMICWindow,
                      result: GMICImageResult, *, original: np.ndarray | None = None) -> Path:
    """Write the PNG atomically to `path`."""
    atomic_write_bytes(Path(path), figure_png(image, window, result, original=original))
    return Path(path)
