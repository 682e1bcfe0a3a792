"""The GMIC figure (outputs/gmic_figure.py): boxes drawn where patch_boxes says, saliency maps
placed over the network window in the stored image (flipped images too), a decodable PNG of
the documented size with the research-use notice. A crafted output stands in for the network
(a saliency hot spot the ROI search must pick first), so no 60-GFLOP forward pass runs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from PIL import Image

from mammocli.config import FlipMode
from mammocli.families.gmic_inference import GMICEnsembleOutput, patch_boxes
from mammocli.io.exam import ImageSource, ViewImage
from mammocli.models.gmic import GMICOutput, cells_to_pixels, retrieve_roi_cells
from mammocli.outputs.gmic_figure import (
    FIGURE_PIXELS,
    build_figure,
    image_result,
    render_png,
    write_gmic_figure,
)
from mammocli.preprocess.gmic import gmic_pipeline_config, gmic_window
from mammocli.preprocess.prepare import PreparedImage, prepare_image
from mammocli.views import View

HOT = (20, 12)  # saliency cell (row, col) of the hot spot


def _prepared(view: View, flip: FlipMode) -> PreparedImage:
    rng = np.random.default_rng(3)
    rows, cols = 2600, 1500  # shorter than the window: zero rows padded above/below (CC)
    pixels = np.zeros((rows, cols), np.uint16)
    stored_faces_right = (view.side.value == "left") == (flip is FlipMode.NO)
    x = np.arange(cols) if stored_faces_right else np.arange(cols)[::-1]
    tissue = x[None, :] < 1100 + 200 * np.sin(np.arange(rows) / 500.0)[:, None]
    tissue[:60] = tissue[-60:] = False
    pixels[tissue] = rng.integers(1, 4096, int(tissue.sum()))
    source = ImageSource(path=Path("x.png"), relative="exam1/x.png", view=view)
    return prepare_image(ViewImage(pixels=pixels, source=source), flip,
                         gmic_pipeline_config().with_(crop_iterations=5, crop_buffer=5))


def _output(n: int = 1, seed: int = 0) -> GMICOutput:
    g = torch.Generator().manual_seed(seed)
    saliency = torch.rand((n, 2, 46, 30), generator=g) * 0.3
    saliency[:, :, HOT[0]:HOT[0] + 4, HOT[1]:HOT[1] + 4] = 0.95
    cells = retrieve_roi_cells(saliency)
    attention = torch.softmax(torch.randn((n, 6), generator=g), dim=1)
    return GMICOutput(saliency=saliency, y_global=saliency.amax(dim=(2, 3)), roi_cells=cells,
                      patch_locations=cells_to_pixels(cells), attention=attention,
                      y_local=torch.full((n, 2), 0.5), y_fusion=torch.tensor([[0.125, 0.75]] * n))


@pytest.mark.parametrize("view, flip", [(View.L_CC, FlipMode.NO), (View.R_MLO, FlipMode.NO),
                                        (View.L_MLO, FlipMode.YES)])
def test_boxes_and_maps_are_drawn_where_patch_boxes_says(view: View, flip: FlipMode) -> None:
    image = _prepared(view, flip)
    window = gmic_window(image)
    out = _output()
    result = image_result(out, 0, member=1)
    boxes = patch_boxes(image, window, out.patch_locations[0])
    fig = build_figure(image, window, result)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == 3
    for ax in axes:
        drawn = {p.get_gid(): p for p in ax.patches if isinstance(p, Rectangle)}
        for k, (top, bottom, left, right) in enumerate(boxes.tolist()):
            if bottom <= top or right <= left:
                assert f"patch-{k}" not in drawn
                continue
            rect = drawn[f"patch-{k}"]
            assert rect.get_xy() == (left, top)
            assert (rect.get_width(), rect.get_height()) == (right - left, bottom - top)
        crop_top, crop_bottom, crop_left, crop_right = image.crop.window_location
        crop = drawn["outline-crop"]
        assert crop.get_xy() == (crop_left, crop_top)
        assert crop.get_width() == crop_right - crop_left
    labels = {t.get_gid(): t.get_text() for t in axes[0].texts}
    assert labels["patch-label-0"] == f"1: {float(out.attention[0, 0]):.2f}"
    assert sum(1 for gid in labels if gid and gid.startswith("patch-label-")) == sum(
        1 for t, b, lft, r in boxes if b > t and r > lft)
    # The benign map: the brightest pixel of the drawn map lies inside the first box (the ROI
    # search's first pick is the hot spot), in stored-image coordinates.
    layer = [im for im in axes[1].images if isinstance(im, AxesImage)][1]
    left, right, bottom, top = layer.get_extent()
    heat = np.asarray(layer.get_array())
    r, c = np.unravel_index(np.argmax(heat), heat.shape)
    y = top + (r + 0.5) * (bottom - top) / heat.shape[0]
    x = left + (c + 0.5) * (right - left) / heat.shape[1]
    b_top, b_bottom, b_left, b_right = boxes[0]
    assert b_top <= y < b_bottom and b_left <= x < b_right
    assert (bottom - top, right - left) == (2944, 1920)


def test_png_decodes_at_the_documented_size_with_the_notice(tmp_path: Path) -> None:
    image = _prepared(View.R_CC, FlipMode.AUTO)
    window = gmic_window(image)
    out = _output(2)
    ensemble = GMICEnsembleOutput(members={2: out, 5: _output(2, seed=1)},
                                  y_fusion=torch.tensor([[0.25, 0.5], [0.0625, 0.875]]))
    result = image_result(ensemble, 1)
    assert result.probabilities == (0.0625, 0.875)  # the ensemble's, not a member's
    assert np.array_equal(result.saliency, out.saliency[1].numpy())  # first member's maps
    assert "member 2" in result.source
    fig = build_figure(image, window, result)
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "Research use only" in texts and "0.875" in fig.get_suptitle()
    path = write_gmic_figure(tmp_path / "fig.png", image, window, result)
    with Image.open(path) as png:
        png.load()
        assert (png.height, png.width) == FIGURE_PIXELS == (1000, 1600)
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.std() > 10  # something was drawn, not a blank canvas
    assert render_png(build_figure(image, window, result))[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(path.read_bytes())) as again:
        assert again.format == "PNG"
