"""GMIC parts on small crafted inputs (fast): ROI search, top-t, cell -> pixel, patch cropping,
window placement, standardisation, patch boxes back in the stored image, and the edge cases the
authors' functions gave in ../shared/gmic/reference/outputs/edge_cases.json (SPEC 5-7, 3.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mammocli.config import FlipMode
from mammocli.families.gmic_inference import patch_boxes
from mammocli.io.exam import ImageSource, ViewImage
from mammocli.models.gmic import (
    GMIC,
    PERCENT_T,
    cells_to_pixels,
    crop_patches,
    retrieve_roi_cells,
    top_t_mean,
)
from mammocli.preprocess.gmic import (
    _pairwise_sum,
    cut_gmic_window,
    float32_sum,
    gmic_pipeline_config,
    gmic_window,
    standardize,
    window_placement,
)
from mammocli.preprocess.prepare import prepare_image
from mammocli.views import View

# edge_cases.json, process_image: (shape, view, best centre) -> padded shape, pad top, borders
PLACEMENTS = [
    ((2000, 800), View.L_CC, (1000, 400), (2944, 1920), 472, (0, 2944, 0, 1920)),
    ((2000, 800), View.L_MLO, (1000, 400), (2944, 1920), 0, (0, 2944, 0, 1920)),
    ((3500, 2500), View.L_CC, (1800, 1000), (3500, 2500), 0, (328, 3272, 40, 1960)),
    ((3500, 2500), View.R_CC, (-50, 3000), (3500, 2500), 0, (0, 2944, 580, 2500)),
    ((3500, 1000), View.L_CC, (1700, 300), (3500, 1920), 0, (228, 3172, 0, 1920)),
    ((2000, 2500), View.R_MLO, (900, 1900), (2944, 2500), 0, (0, 2944, 580, 2500)),
]


@pytest.mark.parametrize("shape, view, center, padded, pad_top, borders", PLACEMENTS)
def test_window_placement_matches_the_authors(shape, view, center, padded, pad_top,
                                              borders) -> None:
    pads, record = window_placement(shape, view.angle, center)
    assert record.padded_shape == padded and pads[0] == pad_top
    assert record.borders_final == borders and not record.resized


def _maps(n: int = 1) -> torch.Tensor:
    return torch.rand((n, 2, 46, 30), generator=torch.Generator().manual_seed(0))


def test_constant_channel_gives_nan_and_all_patches_at_the_origin() -> None:
    maps = _maps()
    maps[0, 0] = 0.5
    assert retrieve_roi_cells(maps)[0].tolist() == [[0, 0]] * 6


def test_two_spikes_then_an_all_zero_map_keeps_returning_the_origin() -> None:
    maps = torch.zeros((1, 2, 46, 30))
    maps[0, 0, 8, 8] = 1.0
    maps[0, 1, 28, 18] = 1.0  # both channels min-max normalised, then summed
    assert retrieve_roi_cells(maps)[0].tolist() == [[5, 5], [25, 15]] + [[0, 0]] * 4


def test_ties_go_to_the_first_window_in_row_major_order() -> None:
    maps = torch.zeros((1, 2, 46, 30))
    maps[:, :, 20:24, 15:19] = 1.0
    maps[:, :, 20:24, 5:9] = 1.0
    assert retrieve_roi_cells(maps)[0, :2].tolist() == [[20, 5], [20, 15]]


def test_roi_search_is_per_image_in_a_batch() -> None:
    maps = _maps(3)
    batched = retrieve_roi_cells(maps)
    for i in range(3):
        assert torch.equal(batched[i], retrieve_roi_cells(maps[i:i + 1])[0])
    # distinct windows whose squares never overlap the previous choice's zeroed cells fully
    assert len({tuple(c) for c in batched[0].tolist()}) == 6


def test_selected_square_is_zeroed_before_the_next_step() -> None:
    maps = torch.zeros((1, 2, 46, 30))
    maps[0, :, 10:14, 10:14] = 1.0
    maps[0, :, 30, 20] = 0.9
    cells = retrieve_roi_cells(maps)[0].tolist()
    assert cells[0] == [10, 10] and cells[1][0] in range(27, 31) and cells[1][1] in range(17, 21)


def test_top_t_sizes_per_member() -> None:
    maps = _maps()
    flat = maps.reshape(1, 2, -1).sort(dim=2, descending=True).values
    for member, k in zip(PERCENT_T, (28, 41, 41, 69, 138), strict=True):
        expected = flat[:, :, :k].mean(dim=2)
        assert torch.allclose(top_t_mean(maps, PERCENT_T[member]), expected, atol=0, rtol=1e-6)


def test_every_reachable_cell_maps_to_64_pixels() -> None:
    cells = torch.tensor([[[r, c] for r in range(43) for c in range(27)]])
    assert torch.equal(cells_to_pixels(cells), cells * 64)


def test_overhanging_patch_aligns_bottom_right_filled_with_the_minimum() -> None:
    image = torch.arange(600, dtype=torch.float32).reshape(1, 1, 20, 30)
    out = crop_patches(image, torch.tensor([[[16, 25]]]), size=8)[0, 0]
    expected = torch.zeros((8, 8))
    expected[4:, 3:] = image[0, 0, 16:20, 25:30]
    assert torch.equal(out, expected)


def test_inside_patch_is_the_window_region() -> None:
    image = torch.randn((2, 1, 64, 48), generator=torch.Generator().manual_seed(1))
    out = crop_patches(image, torch.tensor([[[0, 0], [32, 16]], [[8, 40], [56, 0]]]), size=8)
    assert torch.equal(out[0, 1], image[0, 0, 32:40, 16:24])
    assert torch.equal(out[1, 0], image[1, 0, 8:16, 40:48])


def test_window_size_other_than_the_authors_is_refused() -> None:
    with pytest.raises(ValueError, match="2944 x 1920"):
        GMIC()(torch.zeros((1, 1, 2880, 1920)))


def test_float32_sum_vectorised_blocks_equal_the_step_by_step_algorithm() -> None:
    """The fast path (all 8192-blocks at once) against numpy 1.x's pairwise recursion done
    scalar by scalar; the window standardisation depends on every rounding (the fidelity
    test checks the result bit for bit against the authors' input)."""
    rng = np.random.default_rng(0)
    a = (rng.random(8192 * 3 + 1000) * 4095).astype(np.float32)
    expected = np.float32(0)
    for start in range(0, a.size, 8192):
        expected = np.float32(expected + _pairwise_sum(a[start:start + 8192]))
    assert float32_sum(a) == expected
    assert float32_sum(a[:7]) == np.float32(sum(float(v) for v in a[:7]))  # exact here
    exact = float(np.sum(a.astype(np.float64)))
    assert abs(float(float32_sum(a)) - exact) <= 1e-6 * exact


def test_standardize_gives_zero_mean_unit_std_and_keeps_the_input() -> None:
    rng = np.random.default_rng(0)
    window = (rng.random((64, 48)) * 4095).astype(np.float32)
    window[:, 40:] = 0
    before = window.copy()
    out = standardize(window)
    assert np.array_equal(window, before) and out.dtype == np.float32
    assert abs(float(out.astype(np.float64).mean())) < 1e-6
    assert abs(float(out.astype(np.float64).std()) - 1) < 1e-5
    assert np.array_equal(standardize(np.zeros((8, 8), np.float32)), np.zeros((8, 8)))


@pytest.mark.parametrize("view, flip", [(View.L_CC, FlipMode.NO), (View.R_MLO, FlipMode.NO),
                                        (View.L_MLO, FlipMode.YES)])
def test_patch_boxes_point_at_the_same_pixels_in_the_stored_image(view, flip) -> None:
    rng = np.random.default_rng(3)
    rows, cols = 3200, 2100
    pixels = np.zeros((rows, cols), np.uint16)
    stored_faces_right = (view.side.value == "left") == (flip is FlipMode.NO)
    x = np.arange(cols) if stored_faces_right else np.arange(cols)[::-1]
    tissue = x[None, :] < 1500 + 300 * np.sin(np.arange(rows) / 500.0)[:, None]
    tissue[:60] = tissue[-60:] = False
    pixels[tissue] = rng.integers(1, 4096, int(tissue.sum()))
    source = ImageSource(path=Path("x.png"), relative="x.png", view=view)
    image = prepare_image(ViewImage(pixels=pixels, source=source), flip,
                          gmic_pipeline_config().with_(crop_iterations=5, crop_buffer=5))
    window = gmic_window(image)
    raw = cut_gmic_window(image.pixels, window.pads, window.record)
    locations = torch.tensor([[0, 0], [1280, 640], [2688, 1664]])
    boxes = patch_boxes(image, window, locations)
    for (r, c), (top, bottom, left, right) in zip(locations.tolist(), boxes, strict=True):
        patch = raw[r:r + 256, c:c + 256]
        region = pixels[top:bottom, left:right]
        if image.orientation.needs_flip:
            region = region[:, ::-1]
        # taller than the window: no rows padded; narrower: the box stops where padding starts
        assert window.pads[0] == 0 and region.size
        assert np.array_equal(patch[:region.shape[0], :region.shape[1]],
                              region.astype(np.float32))
        assert region.shape[0] == 256 and (region.shape[1] == 256 or right - left < 256)
