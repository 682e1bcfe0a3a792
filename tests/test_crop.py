"""Stage 1's tissue mask equals the authors' morphology (erode, largest component, dilate, each
`iterations` times with a 3x3 cross; written that way in tests/authors_morphology.py, which the
benchmark's baseline also runs), computed here by distance transforms on bounding boxes."""

from __future__ import annotations

import numpy as np
import pytest
from authors_morphology import iterative_tissue_mask as _authors_mask
from scipy import ndimage

from mammocli.preprocess.crop import largest_tissue_mask


def _blobs(seed: int, shape: tuple[int, int] = (90, 70)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random(shape), sigma=rng.uniform(2, 6))
    return (smooth > np.quantile(smooth, rng.uniform(0.3, 0.8))).astype(np.uint16) * 1000


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("iterations", [1, 3, 6])
def test_matches_the_iterated_erosion_and_dilation(seed: int, iterations: int) -> None:
    image = _blobs(seed)
    want = _authors_mask(image, iterations)
    got = largest_tissue_mask(image, iterations)
    if want is None:
        assert got is None
    else:
        assert got is not None and got.shape == image.shape
        np.testing.assert_array_equal(got, want)


def test_tissue_touching_every_border_and_equal_components() -> None:
    image = np.zeros((40, 60), np.uint16)
    image[:, :12] = 5  # touches top, bottom and left
    image[10:30, 48:] = 5  # touches the right edge
    image[0:8, 25:40] = 5  # touches the top
    for iterations in (1, 2, 4):
        np.testing.assert_array_equal(largest_tissue_mask(image, iterations),
                                      _authors_mask(image, iterations))
    twins = np.zeros((30, 30), np.uint16)
    twins[5:12, 5:12] = twins[18:25, 18:25] = 1  # equal sizes: the first in raster order
    np.testing.assert_array_equal(largest_tissue_mask(twins, 2), _authors_mask(twins, 2))


def test_nothing_survives_the_erosion() -> None:
    assert largest_tissue_mask(np.zeros((20, 20), np.uint16), 2) is None
    speck = np.zeros((20, 20), np.uint16)
    speck[5:8, 5:8] = 1
    assert largest_tissue_mask(speck, 2) is None


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("iterations", [2, 9, 16, 37])
def test_larger_radii_on_phantoms_with_specks(seed: int, iterations: int) -> None:
    """Odd and even radii, several doubling steps of the diagonal segments, tissue touching
    the chest-wall edge and stray specks / a label block that the erosion removes."""
    from mammocli.synthetic.phantoms import phantom
    from mammocli.views import Side

    rng = np.random.default_rng(seed)
    image = phantom((230, 170), rng, facing=Side.LEFT if seed % 2 else Side.RIGHT)
    specks = rng.random(image.shape) < 0.002
    image[specks] = 7
    image[5:5 + 2 * iterations + 3, 120:120 + 2 * iterations + 3] = 9  # a second component
    np.testing.assert_array_equal(largest_tissue_mask(image, iterations),
                                  _authors_mask(image, iterations))
