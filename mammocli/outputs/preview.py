"""`predict --preview DIR`: one `<exam_id>.png` per exam, the four views as a radiologist
hangs them.

Layout: R views on the viewer's left, L views on the right, CC above MLO, chest walls facing
each other (an R view with its chest wall at its right edge, an L view at its left edge: the
canonical image, chest wall left, mirrored for R). Each view shows its cropped image (the
region the model read, outlined) with the malignant map over it: the DMV-CNN's malignant
heatmap when the image-and-heatmaps variant computed one (else the image alone), GMIC's
malignant saliency and its six patches labelled with their attention. Above each breast: its
benign and malignant probabilities (the result's primary variant); the exam id on top and the
research-use notice below. Rows are VIEW_PX pixels high, so a 3000-pixel view is shown at
about a third of its size; the width follows the images' aspect.

Matplotlib's object API only (Figure + Agg canvas): no pyplot state, safe in workers.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..views import Side, View
from ..vocabulary import Export, Family
from .files import atomic_write_bytes, write_failed
from .heatmaps import grey_limits, transparent_low
from .schema import printable
from .sinks import ExamWriter, HeatmapFolders, PlannedExam, check_exam_folder

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..families.gmic_inference import ImageSaliency
    from ..inference.predictor import ExamOutput
    from ..preprocess.prepare import PreparedImage

DPI = 100
VIEW_PX = 900  # height of a view's panel
GAP_PX, HEADER_PX, FOOTER_PX, CAPTION_PX = 24, 120, 130, 34
NOTICE = "Research use only — not for diagnosis"
BOX_COLOUR = "#ffd400"
# (row, column) of each view: R then L from the viewer's left, CC above MLO.
HANGING: dict[View, tuple[int, int]] = {View.R_CC: (0, 0), View.L_CC: (0, 1),
                                        View.R_MLO: (1, 0), View.L_MLO: (1, 1)}


@dataclass(frozen=True)
class Overlay:
    """A malignant map in the displayed panel's pixel coordinates."""

    heat: np.ndarray  # already in display orientation
    extent: tuple[float, float, float, float]  # (left, right, bottom, top) for imshow
    label: str  # colour bar label
    boxes: tuple[tuple[float, float, float, float, float], ...] = ()  # top, bottom, l, r, weight


def displayed(pixels: np.ndarray, view: View) -> np.ndarray:
    """A canonical array (chest wall left) as hung: R views mirrored (chest wall right)."""
    return pixels[..., ::-1] if view.side is Side.RIGHT else pixels


def _dmv_overlay(heatmaps: Any, view: View) -> Overlay:
    height, width = heatmaps.malignant.shape
    return Overlay(displayed(heatmaps.malignant, view), (0, width, height, 0),
                   "DMV-CNN malignant heatmap: P(malignant) per patch")


def _gmic_overlay(saliency: ImageSaliency, image: PreparedImage, view: View) -> Overlay:
    """The first member's malignant saliency over its network window, and its patches; the
    window's rows start `pads[0]` above the cropped image (zero padding), columns at 0."""
    from ..models.gmic import PATCH_SIZE

    member = next(iter(saliency.members.values()))
    top, bottom, left, right = saliency.window.record.borders_final
    pad_top = saliency.window.pads[0]
    width = image.pixels.shape[1]
    rows = (top - pad_top, bottom - pad_top)
    cols = (float(width - right), float(width - left)) if view.side is Side.RIGHT \
        else (float(left), float(right))
    boxes = []
    for (row, col), weight in zip(member.locations.tolist(), member.attention.tolist(),
                                  strict=True):
        y0 = row + top - pad_top
        x0 = col + left
        if view.side is Side.RIGHT:
            x0 = width - x0 - PATCH_SIZE
        boxes.append((float(y0), float(y0 + PATCH_SIZE), float(x0), float(x0 + PATCH_SIZE),
                      float(weight)))
    names = ", ".join(str(m) for m in saliency.members)
    return Overlay(displayed(member.saliency[1], view), (cols[0], cols[1], rows[1], rows[0]),
                   f"GMIC malignant saliency (member {next(iter(saliency.members))} of "
                   f"{names}); boxes: patches, attention", tuple(boxes))


def _overlay(output: ExamOutput, view: View) -> Overlay | None:
    image = output.prepared[view][0]
    saliency = output.exports.get(Export.SALIENCY)
    if isinstance(saliency, Mapping) and saliency.get(view):
        return _gmic_overlay(saliency[view][0], image, view)
    heatmaps = output.heatmaps.get(view)
    if heatmaps:
        return _dmv_overlay(heatmaps[0], view)
    return None


def _sizes(output: ExamOutput) -> dict[View, tuple[int, int]]:
    """Panel (height, width) in pixels of each view present: VIEW_PX high, aspect kept."""
    out = {}
    for view in HANGING:
        images = output.prepared.get(view)
        if images:
            height, width = images[0].pixels.shape
            aspect = min(max(width / max(height, 1), 0.2), 2.0)
            out[view] = (VIEW_PX, max(1, round(VIEW_PX * aspect)))
    return out


def build_preview(output: ExamOutput, exam_id: str) -> Figure:
    """The preview figure (not rendered; its artists can be inspected)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sizes = _sizes(output)
    column_w = [max((sizes[v][1] for v, (_, c) in HANGING.items() if c == col and v in sizes),
                    default=VIEW_PX // 2) for col in (0, 1)]
    row_h = VIEW_PX + CAPTION_PX
    fig_w = column_w[0] + column_w[1] + 3 * GAP_PX
    fig_h = HEADER_PX + 2 * row_h + GAP_PX + FOOTER_PX
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI, facecolor="black")
    FigureCanvasAgg(fig)
    layer = None
    label = ""
    for view, (row, col) in HANGING.items():
        if view not in sizes:
            continue
        height, width = sizes[view]
        # R panels flush with the centre line (their chest wall), L panels likewise.
        x0 = GAP_PX + column_w[0] - width if col == 0 else 2 * GAP_PX + column_w[0]
        y_top = HEADER_PX + row * (row_h + GAP_PX) + CAPTION_PX
        ax = fig.add_axes((x0 / fig_w, 1 - (y_top + height) / fig_h, width / fig_w,
                           height / fig_h), gid=f"panel-{view.value}")
        overlay = _overlay(output, view)
        shown = _panel(ax, output.prepared[view], view, overlay)
        if shown is not None and overlay is not None:
            layer, label = shown, overlay.label
    _texts(fig, output, exam_id, column_w, fig_w, fig_h)
    if layer is not None:
        cax = fig.add_axes((0.3, 86 / fig_h, 0.4, 14 / fig_h))
        bar = fig.colorbar(layer, cax=cax, orientation="horizontal")
        bar.set_label(label, color="white", fontsize=11)
        bar.ax.tick_params(colors="white", labelsize=9)
    return fig


def _panel(ax: Axes, images: Sequence[PreparedImage], view: View,
           overlay: Overlay | None) -> Any:
    from matplotlib.patches import Rectangle

    image = images[0]
    pixels = displayed(image.pixels, view)
    height, width = pixels.shape
    vmin, vmax = grey_limits(pixels)
    ax.imshow(pixels, cmap="gray", vmin=vmin, vmax=vmax, extent=(0, width, height, 0),
              aspect="auto", interpolation="antialiased")
    shown = None
    if overlay is not None:
        shown = ax.imshow(overlay.heat, cmap=transparent_low("Reds"), vmin=0, vmax=1,
                          extent=overlay.extent, aspect="auto", interpolation="bilinear")
        for k, (top, bottom, left, right, weight) in enumerate(overlay.boxes):
            ax.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False,
                                   linewidth=1.5, edgecolor=BOX_COLOUR, gid=f"box-{k}"))
            ax.text(max(left, 0), max(top, 0), f"{k + 1}: {weight:.2f}", color="black",
                    fontsize=8, va="top", ha="left", clip_on=True,
                    bbox={"facecolor": BOX_COLOUR, "edgecolor": "none", "pad": 1})
    # The crop: the region of the stored image the model read (all that is shown here).
    ax.add_patch(Rectangle((0, 0), width, height, fill=False, linestyle="--", linewidth=1.5,
                           edgecolor="white", gid="outline-crop"))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.axis("off")
    more = f"  (image 1 of {len(images)} shown)" if len(images) > 1 else ""
    ax.set_title(f"{view.value}  {printable(image.source.relative)}{more}", color="white",
                 fontsize=11, pad=6)
    return shown


def _texts(fig: Figure, output: ExamOutput, exam_id: str, column_w: list[int], fig_w: int,
           fig_h: int) -> None:
    fig.text(0.5, 1 - 30 / fig_h, f"exam {printable(exam_id)}", ha="center", va="center",
             color="white", fontsize=18, gid="exam-id")
    result = output.result
    if result is not None:
        primary = result.primary
        centres = ((GAP_PX + column_w[0] / 2) / fig_w,
                   (2 * GAP_PX + column_w[0] + column_w[1] / 2) / fig_w)
        for side, x in zip((Side.RIGHT, Side.LEFT), centres, strict=True):
            p = getattr(primary, side.value)
            fig.text(x, 1 - 80 / fig_h, f"{side.letter} breast:  benign {p.benign:.3f}   "
                     f"malignant {p.malignant:.3f}", ha="center", va="center", color="white",
                     fontsize=14, gid=f"breast-{side.letter}")
        model = result.family.value if result.family.value == result.model.value \
            else f"{result.family.value} {result.model.value}"
        fig.text(0.5, 1 - 108 / fig_h, f"{model}, {result.primary_variant.value}; cropped "
                 "views (dashed: the crop)",
                 ha="center", va="center", color="#bbbbbb", fontsize=10)
    fig.text(0.5, 18 / fig_h, NOTICE, ha="center", va="center", color="#ff6060", fontsize=14,
             gid="notice")


def preview_png(output: ExamOutput, exam_id: str) -> bytes:
    buffer = io.BytesIO()
    build_preview(output, exam_id).savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


class PreviewFolder:
    """`--preview DIR`: `<stem>.png` per exam, written atomically as its exam finishes. The
    overwrite and resume rules are the heatmap folders'."""

    option = "--preview"

    def __init__(self, path: Path, *, overwrite: bool, resume: bool) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.resume = resume

    def file(self, planned: PlannedExam) -> Path:
        return self.path / f"{planned.stem}.png"

    def plan(self, exams: list[PlannedExam]) -> None:
        check_exam_folder(self.path, self.option, exams, self.file, "previews",
                          overwrite=self.overwrite, resume=self.resume,
                          hint="use --overwrite to replace them, --resume to keep those of "
                               "finished exams, or choose another folder")

    def exports(self, family: Family) -> frozenset[Export]:
        # GMIC's maps are cheap to hand over; DMV-CNN heatmaps are shown only when a variant
        # computed them anyway (never an extra patch-classifier pass for a picture).
        return frozenset({Export.SALIENCY}) if family is Family.GMIC else frozenset()

    def write(self, planned: PlannedExam, output: ExamOutput) -> Path:
        target = self.file(planned)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, preview_png(output, planned.exam.exam_id))
        except OSError as exc:
            raise write_failed(target, exc) from None
        return target


@dataclass(frozen=True)
class ExamPictures:
    """The picture writers of one run, one `ExamWriter` for `api.predict_many`."""

    writers: tuple[ExamWriter, ...]

    def exports(self, family: Family) -> frozenset[Export]:
        return frozenset().union(*(w.exports(family) for w in self.writers))

    def write(self, planned: PlannedExam, output: ExamOutput) -> None:
        for writer in self.writers:
            writer.write(planned, output)


def picture_writers(save_heatmaps: Path | None, preview: Path | None,
                    planned: list[PlannedExam], *, overwrite: bool, resume: bool,
                    ) -> ExamPictures | None:
    """`--save-heatmaps` and `--preview`, each checked against the run's exams now."""
    writers: list[HeatmapFolders | PreviewFolder] = []
    if save_heatmaps is not None:
        writers.append(HeatmapFolders(save_heatmaps, "--save-heatmaps", overwrite=overwrite,
                                      resume=resume))
    if preview is not None:
        writers.append(PreviewFolder(preview, overwrite=overwrite, resume=resume))
    for writer in writers:
        writer.plan(planned)
    return ExamPictures(tuple(writers)) if writers else None

