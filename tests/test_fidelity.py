"""Fidelity against what the authors' code computed (../shared/nyu/reference, random weights).

Full-size runs: the expensive work (heatmaps of exams 0 and 1) is done once per session.
Exam 1 runs after exam 0 in one random stream (RngMode.RUN), as the authors' scripts did.

Tolerances: per-patch probabilities and heatmaps 1e-5 (measured ~3e-6). Without TTA the
breast-level probabilities 2e-5 (measured ~1.3e-5) and log-probabilities 1e-4 + 5e-5 x |value|
(measured up to 1.9e-4 on a log-probability of -5.8, i.e. 3e-5 relative), because the
reference's own float32 rounding is that large: the random test weights amplify it, and a
float64 evaluation of the same model on the same windows differs from the reference by ~3e-5
in log-probability while ours stays within 1e-5 of it
(`test_float32_rounding_explains_the_residual`). With TTA 1e-3 (as the issue asks; measured
~1e-5).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import require_reference
from reference_cases import Reference

from mammocli.config import PipelineConfig, RngMode
from mammocli.families.dmv_cnn import DmvCnnModels
from mammocli.inference.classify import (
    ClassifierImage,
    draw_windows,
    view_features,
    view_wise_log_probabilities,
    view_wise_probabilities,
)
from mammocli.inference.heatmaps import HeatmapEngine
from mammocli.inference.predictor import Predictor
from mammocli.inference.randomness import ExamRandomness
from mammocli.models.loading import load_image_wise, load_patch_classifier, load_view_wise
from mammocli.outputs.heatmaps import stored_orientation
from mammocli.preprocess.window import cut_window, standardize_image_channel
from mammocli.views import LABELS, VIEWS, Angle
from mammocli.vocabulary import ModelKind, Variant

pytestmark = pytest.mark.slow

HEATMAP_TOL = 1e-5
NOAUG_PROB_TOL = 2e-5
NOAUG_LOGP_ATOL = 1e-4
NOAUG_LOGP_RTOL = 5e-5
TTA_TOL = 1e-3
CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def ref() -> Reference:
    return Reference(require_reference())


@pytest.fixture(scope="session")
def exact_config() -> PipelineConfig:
    return PipelineConfig(rng_mode=RngMode.RUN)


@pytest.fixture(scope="session")
def patch_engine(ref: Reference) -> HeatmapEngine:
    return HeatmapEngine(load_patch_classifier(ref.weights / "sample_patch_model.p"), CPU)


@pytest.fixture(scope="session")
def reference_prepared(ref: Reference, exact_config: PipelineConfig):
    predictor = Predictor(DmvCnnModels(ModelKind.VIEW_WISE, CPU, {}, None), exact_config)
    return [predictor.prepare(exam) for exam in ref.exams()]


@pytest.fixture(scope="session")
def reference_heatmaps(reference_prepared, patch_engine: HeatmapEngine,
                       exact_config: PipelineConfig):
    """Heatmaps of exams 0 and 1 in one stride-list stream (the expensive part, done once)."""
    models = DmvCnnModels(ModelKind.VIEW_WISE, CPU, {}, patch_engine)
    rng = ExamRandomness(0)
    return [(prepared, models.compute_heatmaps(prepared, rng))
            for prepared in reference_prepared]


def test_stage1_stage2_match_reference(ref: Reference, exact_config: PipelineConfig) -> None:
    expected = ref.json("exam_list_with_best_center.json") + ref.json(
        "big_exam_list_with_best_center.json")
    exams = ref.exams() + ref.exams("big_exams")
    predictor = Predictor(DmvCnnModels(ModelKind.VIEW_WISE, CPU, {}, None), exact_config)
    for exam, want in zip(exams, expected, strict=True):
        prepared = predictor.prepare(exam)
        for view in VIEWS:
            for i, img in enumerate(prepared[view]):
                got = {
                    "window_location": list(img.crop.window_location),
                    "rightmost_points": [list(img.crop.rightmost_points[0]),
                                         img.crop.rightmost_points[1]],
                    "bottommost_points": [img.crop.bottommost_points[0],
                                          list(img.crop.bottommost_points[1])],
                    "distance_from_starting_side": img.crop.distance_from_starting_side,
                    "best_center": list(img.best_center),
                }
                for key, value in got.items():
                    assert value == want[key][view.value][i], (img.source.relative, key)


def test_stride_lists_match_reference(ref: Reference, reference_prepared,
                                      patch_engine: HeatmapEngine) -> None:
    rng = ExamRandomness(0)
    calls = []
    for prepared in reference_prepared:
        for view in VIEWS:
            for img in prepared[view]:
                rows, cols = patch_engine.grid(img.pixels.shape, rng.strides)
                calls += [np.diff(rows).tolist(), np.diff(cols).tolist()]
    recorded = ref.json("stage3_heatmaps_stride_lists.json")["stride_lists"]
    assert calls == [c["strides"] for c in recorded]


def test_patch_probabilities_and_heatmaps_match_reference(ref: Reference,
                                                          reference_heatmaps) -> None:
    all_prob = ref.npz("stage3_heatmaps_all_prob.npz")
    expected = ref.npz("heatmaps_exam_float32.npz")
    for exam_index, (prepared, heatmaps) in enumerate(reference_heatmaps):
        probs = []
        for view in VIEWS:
            for img, maps in zip(prepared[view], heatmaps[view], strict=True):
                name = img.source.relative.removesuffix(".png")
                for kind, array in (("benign", maps.benign), ("malignant", maps.malignant)):
                    ours = stored_orientation(array, img)
                    want = expected[f"{name}__{kind}"]
                    assert ours.shape == want.shape
                    assert np.abs(ours - want).max() <= HEATMAP_TOL, (name, kind)
                probs.append(maps.patch_probabilities)
        ours_prob = np.concatenate(probs)
        want_prob = all_prob[f"exam{exam_index}"]
        assert ours_prob.shape == want_prob.shape
        assert np.abs(ours_prob - want_prob).max() <= HEATMAP_TOL


def test_single_image_heatmaps_equal_exam_pipeline(ref: Reference, reference_heatmaps) -> None:
    prepared, heatmaps = reference_heatmaps[0]
    expected = ref.npz("heatmaps_single_float32.npz")
    img = prepared[VIEWS[0]][0]
    assert img.source.relative == "1_L_CC.png"
    for kind in ("benign", "malignant"):
        key = next(k for k in expected if k.endswith(kind))
        ours = getattr(heatmaps[VIEWS[0]][0], kind)
        assert np.abs(ours - expected[key]).max() <= HEATMAP_TOL


def _classifier_images(prepared, heatmaps, with_heatmaps: bool):
    return {
        view: [ClassifierImage(img.pixels, img.best_center,
                               (maps.benign, maps.malignant) if with_heatmaps else None)
               for img, maps in zip(prepared[view], heatmaps.get(view, [None] * 9),
                                    strict=False)]
        for view in VIEWS if view in prepared
    }


def _run_view_wise(cases, model, config: PipelineConfig, with_heatmaps: bool):
    """Exams in one TTA stream, like the authors' run_model.py."""
    rng = np.random.RandomState(0)
    draws_all, logps, preds = [], [], []
    for prepared, heatmaps in cases:
        images = _classifier_images(prepared, heatmaps, with_heatmaps)
        draws = draw_windows(images, config, rng, augment=config.tta > 0,
                             epochs=max(config.tta, 1))
        feats = view_features(model, images, draws, config, CPU)
        logp = view_wise_log_probabilities(model, feats)
        probs = view_wise_probabilities(model, feats)  # the package's averaging, not ours
        preds.append([probs[label] for label in LABELS])
        draws_all += draws
        logps += [{a: logp[a][e].numpy() for a in Angle} for e in range(logp[Angle.CC].shape[0])]
    return draws_all, logps, np.array(preds)


def _check_windows(draws, recorded) -> None:
    assert len(draws) == len(recorded)
    for d, r in zip(draws, recorded, strict=True):
        assert d.view.value == r["view"]
        assert list(d.record.padded_shape) == r["image_shape_padded"][:2]
        assert list(d.record.borders_after_crop_noise) == r["borders_after_crop_noise"]
        assert list(d.record.borders_final) == r["borders_final"]
        assert d.record.resized == r["resized"]


@pytest.mark.parametrize("variant,weights,channels", [
    ("image", "sample_image_model.p", 1),
    ("imageheatmaps", "sample_imageheatmaps_model.p", 3),
])
@pytest.mark.parametrize("tta", [0, 10])
def test_view_wise_models_match_reference(ref: Reference, reference_heatmaps, variant: str,
                                          weights: str, channels: int, tta: int) -> None:
    model = load_view_wise(ref.weights / weights, channels)
    config = PipelineConfig(tta=tta)
    draws, logps, preds = _run_view_wise(reference_heatmaps, model, config, channels == 3)
    stage = "4a" if channels == 1 else "4b"
    recorded = ref.json(f"stage{stage}_{variant}_{'aug10' if tta else 'noaug'}.json")
    _check_windows(draws, recorded["windows"])
    prob_tol, logp_atol, logp_rtol = (TTA_TOL, TTA_TOL, 0.0) if tta else (
        NOAUG_PROB_TOL, NOAUG_LOGP_ATOL, NOAUG_LOGP_RTOL)
    want = np.array(recorded["predictions_full_precision"])
    assert np.abs(preds - want).max() <= prob_tol
    assert len(logps) == len(recorded["batches"])
    for ours, batch in zip(logps, recorded["batches"], strict=True):
        for angle in Angle:
            exp = np.array(batch["log_probs"][angle.value])[0]
            np.testing.assert_allclose(ours[angle], exp, atol=logp_atol, rtol=logp_rtol)


@pytest.mark.parametrize("tta", [0, 10])
def test_big_exam_image_only_matches_reference(ref: Reference, tta: int) -> None:
    config = PipelineConfig(tta=tta, rng_mode=RngMode.RUN)
    model = load_view_wise(ref.weights / "sample_image_model.p", 1)
    predictor = Predictor(DmvCnnModels(ModelKind.VIEW_WISE, CPU, {}, None), config)
    prepared = predictor.prepare(ref.exams("big_exams")[0])
    draws, _, preds = _run_view_wise([(prepared, {})], model, config, False)
    recorded = ref.json(f"big_stage4a_image_{'aug10' if tta else 'noaug'}.json")
    _check_windows(draws, recorded["windows"])
    want = np.array(recorded["predictions_full_precision"])
    assert np.abs(preds - want).max() <= (TTA_TOL if tta else NOAUG_PROB_TOL)


@pytest.mark.parametrize("variant,weights,channels", [
    ("4a_image", "ImageOnly__ModeImage_weights.p", Variant.IMAGE_ONLY),
    ("4b_imageheatmaps", "ImageHeatmaps__ModeImage_weights.p", Variant.IMAGE_AND_HEATMAPS),
])
@pytest.mark.parametrize("tta", [0, 10])
def test_image_wise_single_image_matches_reference(ref: Reference, reference_heatmaps,
                                                   variant: str, weights: str, channels: Variant,
                                                   tta: int) -> None:
    """Our bug-free single-image result equals the authors' batch-size-1 run (the image-wise
    model on the L-CC view alone; the authors' single pipeline does not flip L-CC either)."""
    prepared, heatmaps = reference_heatmaps[0]
    l_cc = VIEWS[0]
    model = load_image_wise(ref.weights / weights)
    models = DmvCnnModels(ModelKind.IMAGE_WISE, CPU, {channels: model}, None)
    _, per_view, draws = models.classify(channels, {l_cc: prepared[l_cc]}, heatmaps,
                                         ExamRandomness(0), PipelineConfig(tta=tta))
    assert per_view is not None
    recorded = ref.json(f"single{variant}_{'aug10' if tta else 'noaug'}.json")
    _check_windows(draws, recorded["windows"])
    printed = json.loads(recorded["printed"])
    benign, malignant = per_view[l_cc]
    tol = TTA_TOL if tta else NOAUG_PROB_TOL
    assert abs(benign - printed["benign"]) <= tol
    assert abs(malignant - printed["malignant"]) <= tol


def test_float32_rounding_explains_the_residual(ref: Reference, reference_heatmaps) -> None:
    """Without TTA our float32 result is within 1e-5 of a float64 evaluation of the same
    formulas, while the reference's float32 output is further from it: the residual between
    us and the reference is the reference's rounding, not a difference of method."""
    model = load_view_wise(ref.weights / "sample_image_model.p", 1)
    config = PipelineConfig(tta=0)
    prepared, _ = reference_heatmaps[0]
    images = _classifier_images(prepared, {}, False)
    draws = draw_windows(images, config, np.random.RandomState(0), augment=False, epochs=1)
    ours = view_wise_log_probabilities(model, view_features(model, images, draws, config, CPU))
    model64 = copy.deepcopy(model).double()
    with torch.inference_mode():
        features64 = {}
        for d in draws:
            window = cut_window(images[d.view][0].joint(False), d.pads, d.record,
                                config.window(d.view.angle))
            x = standardize_image_channel(window.double())[None]
            features64[d.view] = model64.features(d.view, x)
        exact = model64.heads(features64)
    recorded = ref.json("stage4a_image_noaug.json")["batches"][0]["log_probs"]
    for angle in Angle:
        ours_err = np.abs(ours[angle].numpy() - exact[angle].numpy()).max()
        ref_err = np.abs(np.array(recorded[angle.value]) - exact[angle].numpy()).max()
        assert ours_err <= 1e-5
        assert ours_err < ref_err


def test_labels_order_is_the_authors() -> None:
    assert LABELS == ("left_benign", "right_benign", "left_malignant", "right_malignant")
