"""Pictures: `predict --save-heatmaps` for GMIC (saliency arrays, figure, index), `--preview`
(the four views as hung, read back from the PNG), and the DMV-CNN overlay fixes.

Cheap by construction: the hanging-order and overlay checks draw crafted maps on small
prepared phantoms (no network); one DMV-CNN CLI run at the small pipeline sizes and one GMIC
CLI run with one member (four 400 x 300 images, ~2 s each) cover the wiring, and the GMIC
arrays are compared with the family's own inference of the same exam.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mammocli.api import load_pipeline_config
from mammocli.cli.app import app
from mammocli.config import FlipMode, PipelineConfig
from mammocli.errors import OutputError
from mammocli.families import get_family
from mammocli.inference.heatmaps import Heatmaps
from mammocli.inference.predictor import ExamOutput, Predictor
from mammocli.inference.randomness import ExamRandomness
from mammocli.io.discover import discover_exams
from mammocli.io.exam import ImageSource, ViewImage
from mammocli.outputs.heatmaps import PANEL_PX, _overlay_png, transparent_low
from mammocli.outputs.preview import (
    NOTICE,
    VIEW_PX,
    PreviewFolder,
    build_preview,
    preview_png,
)
from mammocli.outputs.schema import PredictionResult
from mammocli.outputs.sinks import plan_exams
from mammocli.preprocess.prepare import PreparedImage, prepare_image
from mammocli.synthetic.phantoms import phantom, write_exam, write_random_gmic_weights
from mammocli.views import VIEWS, Side, View
from mammocli.vocabulary import Export, Family, ModelKind, Variant
from mammocli.weights.overrides import weights_locator

runner = CliRunner()
SMALL = PipelineConfig.small()


def _rgb(png: bytes | Path) -> np.ndarray:
    data = png.read_bytes() if isinstance(png, Path) else png
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def _prepared(shape: tuple[int, int] = (400, 300), seed: int = 5,
              ) -> dict[View, list[PreparedImage]]:
    """Four phantoms stored as the authors' layout (L facing right, R facing left)."""
    rng = np.random.default_rng(seed)
    out = {}
    for view in VIEWS:
        facing = Side.RIGHT if view.side is Side.LEFT else Side.LEFT
        source = ImageSource(path=Path(f"{view.value}.png"), relative=f"{view.value}.png",
                             view=view)
        image = ViewImage(pixels=phantom(shape, rng, facing=facing), source=source)
        out[view] = [prepare_image(image, FlipMode.AUTO, SMALL)]
    return out


def _panel_box(fig, view: View) -> tuple[int, int, int, int]:  # type: ignore[no-untyped-def]
    """(top, bottom, left, right) of a view's panel in PNG pixels."""
    ax = next(a for a in fig.axes if a.get_gid() == f"panel-{view.value}")
    box = ax.get_window_extent()
    height = fig.bbox.height
    return (round(height - box.y1), round(height - box.y0), round(box.x0), round(box.x1))


def _red(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] - rgb[..., 1] > 60) & (rgb[..., 0] - rgb[..., 2] > 60)


# --- the preview, from crafted maps -------------------------------------------------------------


def test_views_hang_r_left_cc_on_top_chest_walls_facing_each_other() -> None:
    prepared = _prepared()
    heatmaps = {}
    for view, images in prepared.items():
        heat = np.zeros(images[0].pixels.shape, np.float32)
        if view is View.R_CC:  # a hot spot at the chest wall of the canonical image (left)
            heat[100:160, :40] = 1.0
        heatmaps[view] = [Heatmaps(benign=heat, malignant=heat, patches=1)]
    output = ExamOutput(None, prepared, {Export.HEATMAPS: heatmaps})
    fig = build_preview(output, "exam_7")
    rgb = _rgb(preview_png(output, "exam_7"))
    assert rgb.shape[:2] == (round(fig.bbox.height), round(fig.bbox.width))
    boxes = {view: _panel_box(fig, view) for view in VIEWS}
    for view, (top, bottom, left, right) in boxes.items():
        assert bottom - top == VIEW_PX  # a 400-px view is shown 900 px high
        height, width = prepared[view][0].pixels.shape
        assert right - left == pytest.approx(VIEW_PX * width / height, abs=1)
    (rt, _, rl, _), (lt, _, ll, _) = boxes[View.R_CC], boxes[View.L_CC]
    assert rl < ll and rt == lt  # R-CC left of L-CC, same row
    # MLO below CC; R panels end at the centre line, L panels start after it.
    assert boxes[View.R_MLO][0] > rt and boxes[View.R_MLO][3] == boxes[View.R_CC][3]
    assert boxes[View.L_MLO][2] == ll
    # The only red in the panels is R-CC's hot spot: top-left quadrant, at the panel's right
    # edge (R views are mirrored so that their chest wall faces the L views).
    in_panels = np.zeros(rgb.shape[:2], bool)
    for top, bottom, left, right in boxes.values():
        in_panels[top:bottom, left:right] = True
    ys, xs = np.nonzero(_red(rgb) & in_panels)
    assert ys.size > 100
    top, bottom, left, right = boxes[View.R_CC]
    assert ys.max() < rgb.shape[0] / 2 and xs.max() < rgb.shape[1] / 2
    assert top <= ys.min() and ys.max() <= bottom
    assert xs.min() > left + 0.8 * (right - left) and xs.max() <= right + 1
    # Chest walls: tissue touches the inner edge of every panel, the outer edge is background.
    for view, (top, bottom, left, right) in boxes.items():
        grey = rgb[top + 5:bottom - 5, left:right].mean(axis=2)
        band = (right - left) // 10
        inner, outer = ((grey[:, -band:-4], grey[:, 4:band]) if view.side is Side.RIGHT
                        else (grey[:, 4:band], grey[:, -band:-4]))
        assert inner.mean() > 40 > outer.mean(), view
    texts = " ".join(t.get_text() for t in fig.texts)
    assert NOTICE in texts and "exam_7" in texts


def test_preview_size_follows_the_images_aspect() -> None:
    wide = build_preview(ExamOutput(None, _prepared((300, 400))), "a")
    tall = build_preview(ExamOutput(None, _prepared((500, 200))), "a")
    assert wide.bbox.height == tall.bbox.height
    assert wide.bbox.width > 1.5 * tall.bbox.width


def test_preview_folder_keeps_the_heatmap_rules(tmp_path: Path) -> None:
    exam = write_exam(tmp_path / "in" / "ex1")
    planned, _ = plan_exams(discover_exams(exam), exam.parent)
    folder = tmp_path / "previews"
    folder.mkdir()
    (folder / "ex1.png").write_bytes(b"old")
    with pytest.raises(OutputError, match="already holds previews for 1 exam"):
        PreviewFolder(folder, overwrite=False, resume=False).plan(planned)
    PreviewFolder(folder, overwrite=True, resume=False).plan(planned)
    PreviewFolder(folder, overwrite=False, resume=True).plan(planned)
    assert PreviewFolder(folder, overwrite=False, resume=False).exports(Family.GMIC) == {
        Export.SALIENCY}
    # No extra patch-classifier pass for a picture: the DMV-CNN shows what its variants made.
    assert PreviewFolder(folder, overwrite=False, resume=False).exports(Family.DMV_CNN) == set()


# --- DMV-CNN overlays ---------------------------------------------------------------------------


def _overlay_panels(rgb: np.ndarray, aspect: float) -> list[np.ndarray]:
    """The three panels of an overlay PNG, at the layout's documented places: PANEL_PX high,
    as wide as the image's aspect makes them, 16 px apart."""
    width = round(PANEL_PX * aspect)
    assert rgb.shape[1] == 3 * width + 4 * 16
    return [rgb[40:40 + PANEL_PX, 16 + i * (width + 16):16 + i * (width + 16) + width]
            for i in range(3)]


def test_overlay_low_heat_leaves_the_tissue_unveiled_and_bars_are_labelled() -> None:
    rng = np.random.default_rng(1)
    image = (rng.integers(1000, 60000, (300, 200))).astype(np.uint16)
    heat = np.zeros((300, 200), np.float32)
    heat[:, 150:] = 1.0  # hot on the right quarter only
    rgb = _rgb(_overlay_png(image, heat, heat, "L-CC"))
    plain, benign, malignant = _overlay_panels(rgb, 200 / 300)
    h, w = plain.shape[:2]
    rows = slice(h // 3, 2 * h // 3)
    cold = slice(w // 10, w // 2)  # well inside the zero-heat part
    np.testing.assert_array_equal(malignant[rows, cold], plain[rows, cold])
    np.testing.assert_array_equal(benign[rows, cold], plain[rows, cold])
    assert _red(malignant[rows, int(w * 0.85):w - 3]).mean() > 0.9
    assert transparent_low("Reds")(0.0)[3] == 0.0 and transparent_low("Reds")(1.0)[3] > 0.8


def test_overlay_labels_and_size_follow_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.colorbar import Colorbar

    labels: list[str] = []
    real = Colorbar.set_label

    def spy(self, label, *args, **kwargs):  # type: ignore[no-untyped-def]
        labels.append(label)
        return real(self, label, *args, **kwargs)

    monkeypatch.setattr(Colorbar, "set_label", spy)
    heat = np.full((400, 300), 0.5, np.float32)
    tall = _rgb(_overlay_png(np.ones((400, 300), np.uint16), heat, heat, "R-MLO"))
    assert [t for t in labels if t] == ["P(benign) per patch", "P(malignant) per patch"]
    wide = _rgb(_overlay_png(np.ones((300, 400), np.uint16), heat.T, heat.T, "R-CC"))
    assert tall.shape[0] == wide.shape[0] and wide.shape[1] > 1.4 * tall.shape[1]
    assert tall.shape[:2] != (600, 1200)


# --- DMV-CNN through predict --------------------------------------------------------------------


def test_dmv_cnn_predict_writes_a_preview(tmp_path: Path, random_weights: Path,
                                          small_pipeline: Path) -> None:
    # image-only keeps it cheap (no patch classifier): the views are drawn without heatmaps.
    exam = write_exam(tmp_path / "exam_a", shape=(400, 300), seed=3)
    args = ["predict", str(exam), "--weights-dir", str(random_weights), "--pipeline-config",
            str(small_pipeline), "--tta", "1", "--variants", "image-only", "-q",
            "--preview", str(tmp_path / "pv")]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.stderr
    rgb = _rgb(tmp_path / "pv" / "exam_a.png")
    assert rgb.shape[0] > 2 * VIEW_PX and rgb.shape[1] > VIEW_PX
    assert not _red(rgb[:-140]).any()  # no heatmap was computed, none is drawn
    again = runner.invoke(app, args)  # the same folder without --overwrite: refused first
    assert again.exit_code == 2 and "already holds previews" in again.stderr, again.stderr


# --- GMIC ---------------------------------------------------------------------------------------


@dataclass
class GmicRun:
    exam: Path
    heat: Path
    preview: Path
    result: PredictionResult
    weights: Path
    config: Path


@pytest.fixture(scope="module")
def gmic_run(tmp_path_factory: pytest.TempPathFactory, small_pipeline: Path) -> GmicRun:
    root = tmp_path_factory.mktemp("gmic_pictures")
    weights = write_random_gmic_weights(root / "w", members=(1,))
    exam = write_exam(root / "exam_g", shape=(400, 300), seed=2,
                      lesion_views=(View.R_CC,))
    args = ["predict", str(exam), "--model", "gmic", "--gmic-models", "1", "--weights-dir",
            str(weights), "--pipeline-config", str(small_pipeline), "--threads", "2", "-q",
            "--save-heatmaps", str(root / "heat"), "--preview", str(root / "pv"),
            "-o", str(root / "r.json")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    again = runner.invoke(app, args[:-2])  # heatmaps already there: refused before any work
    assert again.exit_code != 0 and "already holds heatmaps" in again.stderr
    return GmicRun(exam, root / "heat" / "exam_g", root / "pv" / "exam_g.png",
                   PredictionResult.model_validate_json((root / "r.json").read_text()),
                   weights, small_pipeline)


def test_gmic_save_heatmaps_writes_arrays_figures_and_index(gmic_run: GmicRun) -> None:
    index = json.loads((gmic_run.heat / "heatmaps.json").read_text())
    assert index["family"] == "gmic" and "member_<i>" in index["maps"]
    assert [i["view"] for i in index["images"]] == [v.value for v in gmic_run.result.views]
    for item in index["images"]:
        arrays = np.load(gmic_run.heat / item["arrays"])
        assert set(arrays.files) == {"benign", "malignant", "member_1"}
        assert arrays["malignant"].dtype == np.float32 and arrays["malignant"].shape == (46, 30)
        np.testing.assert_array_equal(arrays["member_1"][1], arrays["malignant"])
        top, bottom, left, right = item["saliency_window"]
        assert (bottom - top, right - left) == (2944, 1920)  # the network window
        with Image.open(gmic_run.heat / item["overlay"]) as png:
            assert png.size == (1600, 1000)  # readable, not the authors' 11,600-px strip
        ours = gmic_run.result.views[View(item["view"])][0].predictions[Variant.GMIC_1]
        assert item["probabilities"]["malignant"] == pytest.approx(ours.malignant, abs=1e-6)


def test_gmic_saliency_arrays_equal_the_familys_inference(gmic_run: GmicRun) -> None:
    family = get_family(Family.GMIC)
    config = load_pipeline_config(gmic_run.config)
    locate = weights_locator(gmic_run.weights, {}, progress=False)
    models = family.load(ModelKind.GMIC, (Variant.GMIC_1,), locate, torch.device("cpu"), config)
    predictor = Predictor(models, config, exports=[Export.SALIENCY])
    (exam,) = discover_exams(gmic_run.exam)
    output = predictor.run(exam, ExamRandomness(0))
    saliency = output.exports[Export.SALIENCY]
    index = json.loads((gmic_run.heat / "heatmaps.json").read_text())
    for item in index["images"]:
        view = View(item["view"])
        image = output.prepared[view][0]
        computed = saliency[view][0].members[1].saliency  # type: ignore[index]
        stored = np.load(gmic_run.heat / item["arrays"])["member_1"]
        expected = computed[..., ::-1] if image.orientation.needs_flip else computed
        np.testing.assert_array_equal(stored, expected)
        assert item["flipped"] == image.orientation.needs_flip
    # The same output draws the GMIC preview: malignant saliency and six labelled patches.
    fig = build_preview(output, "exam_g")
    panel = next(a for a in fig.axes if a.get_gid() == "panel-R-CC")
    assert sum(1 for p in panel.patches if (p.get_gid() or "").startswith("box-")) == 6
    assert len(panel.images) == 2  # image + saliency
    texts = " ".join(t.get_text() for t in fig.texts)
    right = output.result.primary.right  # type: ignore[union-attr]
    assert f"R breast:  benign {right.benign:.3f}   malignant {right.malignant:.3f}" in texts


def test_gmic_preview_png_is_written_at_a_readable_size(gmic_run: GmicRun) -> None:
    rgb = _rgb(gmic_run.preview)
    assert rgb.shape[0] > 2 * VIEW_PX
    assert rgb.std() > 10
