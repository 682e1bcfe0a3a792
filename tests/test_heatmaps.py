"""The heatmap engine's parts, at small sizes: stride lists, overlap averaging, background
deduplication, images smaller than a patch."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import mammocli.inference.heatmaps as heatmaps_module
from mammocli.inference.heatmaps import HeatmapEngine, assemble, patch_offsets, stride_list
from mammocli.models.densenet import PatchClassifier
from mammocli.synthetic.phantoms import phantom


@pytest.mark.parametrize("length", [256, 257, 300, 325, 326, 395, 396, 1263, 2592, 2677, 2974])
def test_stride_lists_end_at_the_edge(length: int) -> None:
    strides = stride_list(length, 256, 70, random.Random(0))
    assert sum(strides) == length - 256
    assert all(s in (max(strides), max(strides) - 1) for s in strides) or len(strides) <= 1


def test_stride_list_edge_cases_and_window_counts() -> None:
    assert stride_list(256, 256, 70, random.Random(0)) == []
    assert stride_list(300, 256, 70, random.Random(0)) == [44]
    with pytest.raises(ValueError):
        stride_list(255, 256, 70, random.Random(0))
    # SPEC 5.2: a CC window is 36 x 26 patches, an MLO window 40 x 23.
    rng = random.Random(0)
    assert (len(patch_offsets(2677, 256, 70, rng)), len(patch_offsets(1942, 256, 70, rng))) == (
        36, 26)
    assert (len(patch_offsets(2974, 256, 70, rng)), len(patch_offsets(1748, 256, 70, rng))) == (
        40, 23)


def test_stride_list_draws_like_the_authors() -> None:
    """Same draws as CPython's random.sample over range(steps): the set of shortened steps."""
    rng, check = random.Random(7), random.Random(7)
    strides = stride_list(1263, 256, 70, rng)
    k = (1263 - 256) // 70 + 1
    overlap = 70 - (1263 - 256) % 70
    chosen = set(check.sample(range(k), overlap % k))
    assert {i for i, s in enumerate(strides) if s == min(strides)} == chosen


def test_separable_assembly_equals_patch_by_patch_average() -> None:
    rng = np.random.default_rng(0)
    rows, cols, p = np.array([0, 10, 19, 30]), np.array([0, 9, 20]), 16
    probs = rng.uniform(size=(len(rows), len(cols)))
    shape = (46, 36)
    total = np.zeros(shape)
    count = np.zeros(shape)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            total[r:r + p, c:c + p] += probs[i, j]
            count[r:r + p, c:c + p] += 1
    np.testing.assert_allclose(assemble(probs, rows, cols, p, shape), total / count, rtol=1e-6)


@pytest.fixture(scope="module")
def engine() -> HeatmapEngine:
    torch.manual_seed(0)
    return HeatmapEngine(PatchClassifier().eval(), torch.device("cpu"), patch_size=64,
                         stride=20, batch_size=16)


def test_background_patches_are_deduplicated_exactly(engine: HeatmapEngine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    image = np.zeros((200, 160), dtype=np.uint16)
    image[:, :90] = phantom((200, 90), np.random.default_rng(1))
    rows, cols = engine.grid(image.shape, random.Random(0))
    fast = engine.patch_probabilities(image, rows, cols)
    # Mark every patch as tissue: all of them run through the network.
    monkeypatch.setattr(heatmaps_module, "_patch_has_tissue",
                        lambda mask, r, c, p: np.ones(len(r), dtype=bool))
    slow = engine.patch_probabilities(image, rows, cols)
    assert (fast == fast[-1, -1]).all(axis=-1).any()  # some background patches exist
    np.testing.assert_allclose(fast, slow, atol=1e-6)


def test_images_smaller_than_a_patch_are_padded(engine: HeatmapEngine) -> None:
    image = phantom((50, 40), np.random.default_rng(2))
    maps = engine.heatmaps(image, random.Random(0))
    assert maps.benign.shape == maps.malignant.shape == (50, 40)
    assert maps.patches == 1
    assert np.isfinite(maps.benign).all()
    assert maps.patch_probabilities is not None and maps.patch_probabilities.shape == (1, 4)


def test_engine_keeps_only_its_plan_not_the_module_it_was_built_from() -> None:
    # Benchmark-only state stays out of the engine: the module it is built from (the
    # straightforward model the benchmark baseline runs) is not kept alive on the device.
    import gc
    import weakref

    torch.manual_seed(0)
    model = PatchClassifier().eval()
    ref = weakref.ref(model)
    engine = HeatmapEngine(model, torch.device("cpu"), patch_size=64, stride=20, batch_size=16)
    del model
    gc.collect()
    assert ref() is None
    assert not hasattr(engine, "model")
    image = phantom((100, 80), np.random.default_rng(2))
    maps = engine.heatmaps(image, random.Random(0))  # the engine still runs on its own
    assert maps.benign.shape == (100, 80) and np.isfinite(maps.malignant).all()
