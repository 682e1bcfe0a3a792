"""Orchestration: an exam on disk -> a PredictionResult. No maths here; each stage lives in its
own module (prepare, heatmaps, classify)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..config import FlipMode, PipelineConfig
from ..errors import ConfigError
from ..io.dicom.options import DicomOptions
from ..io.dicom.scan import dicom_uids
from ..io.exam import ExamSource
from ..model_kinds import BREAST_WEIGHTS, PATCH_WEIGHTS, VARIANTS, ModelKind
from ..models.breast import ImageBreastModel, SplitBreastModel
from ..models.loading import load_image_wise, load_patch_classifier, load_view_wise
from ..outputs.schema import (
    VARIANT_IMAGE_AND_HEATMAPS,
    VARIANT_IMAGE_ONLY,
    BreastPredictions,
    ImageReport,
    PredictionResult,
    Probabilities,
    WeightsUsed,
)
from ..preprocess.orientation import to_canonical
from ..preprocess.prepare import ExamPreparer, PreparedImage
from ..views import VIEWS, View
from ..weights.fetch import weights_used
from .classify import (
    ClassifierImage,
    WindowDraw,
    breast_means,
    draw_windows,
    image_wise_probabilities,
    view_features,
    view_wise_probabilities,
)
from .heatmaps import HeatmapEngine, Heatmaps
from .precision import Precision, configure
from .randomness import ExamRandomness

CHANNELS = {VARIANT_IMAGE_ONLY: 1, VARIANT_IMAGE_AND_HEATMAPS: 3}


@dataclass
class Models:
    """The loaded networks of one run, on their device."""

    kind: ModelKind
    device: torch.device
    breast: dict[str, SplitBreastModel | ImageBreastModel]
    heatmap_engine: HeatmapEngine | None
    weights: list[WeightsUsed] = field(default_factory=list)
    precision: Precision = Precision.FP32

    @classmethod
    def load(cls, kind: ModelKind, variants: tuple[str, ...], locate: Callable[[str], Path],
             device: torch.device, config: PipelineConfig, *,
             patch_classifier: bool = False,
             precision: Precision | str = Precision.FP32) -> Models:
        """`locate(name)` gives the local path of an official weight file (downloading it if
        need be). The patch classifier is loaded when a variant or the caller needs heatmaps.
        `precision` other than fp32 is an opt-in approximation (see `precision.configure`)."""
        precision = Precision(precision)
        dtype = configure(precision, device)
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
        used = []
        engine = None
        if PATCH_WEIGHTS in cls.weight_files(kind, variants, patch_classifier=patch_classifier):
            path = locate(PATCH_WEIGHTS)
            used.append(weights_used(PATCH_WEIGHTS, path))
            engine = HeatmapEngine(load_patch_classifier(path), device,
                                   patch_size=config.patch_size, stride=config.patch_stride,
                                   batch_size=config.heatmap_batch_size, dtype=dtype)
        breast: dict[str, SplitBreastModel | ImageBreastModel] = {}
        for variant in variants:
            name = BREAST_WEIGHTS[(kind, variant)]
            path = locate(name)
            used.append(weights_used(name, path))
            loader = load_view_wise if kind is ModelKind.VIEW_WISE else load_image_wise
            model = loader(path, CHANNELS[variant]).to(device).eval()
            # Only the ResNet columns change dtype: the small heads stay fp32.
            model.four_view_resnet.to(dtype)
            model.four_view_resnet.to(  # type: ignore[call-overload]
                memory_format=torch.channels_last)  # as the inputs (see classify.view_features)
            breast[variant] = model
        return cls(kind, device, breast, engine, used, precision)

    @staticmethod
    def weight_files(kind: ModelKind, variants: tuple[str, ...], *,
                     patch_classifier: bool = False) -> list[str]:
        """The official weight files `load` reads for these variants."""
        names = [PATCH_WEIGHTS] if patch_classifier or VARIANT_IMAGE_AND_HEATMAPS in variants \
            else []
        return names + [BREAST_WEIGHTS[(kind, v)] for v in variants if (kind, v) in BREAST_WEIGHTS]

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision is Precision.BF16 else torch.float32


@dataclass(frozen=True)
class ExamOutput:
    """Everything computed for one exam: the result, plus arrays for optional exports."""

    result: PredictionResult | None  # None when only heatmaps were asked for
    prepared: dict[View, list[PreparedImage]]
    heatmaps: dict[View, list[Heatmaps]]  # canonical orientation
    draws: dict[str, list[WindowDraw]]


class Predictor:
    def __init__(self, models: Models, config: PipelineConfig, *,
                 flip_mode: FlipMode = FlipMode.AUTO, need_heatmaps: bool = False,
                 dicom: DicomOptions | None = None) -> None:
        self.models = models
        self.config = config
        self.flip_mode = flip_mode
        self.dicom = dicom or DicomOptions()
        self.preparer = ExamPreparer(config, flip_mode, self.dicom)
        self.need_heatmaps = need_heatmaps or VARIANT_IMAGE_AND_HEATMAPS in models.breast

    def prepare(self, exam: ExamSource) -> dict[View, list[PreparedImage]]:
        return self.preparer(exam)

    def compute_heatmaps(self, prepared: Mapping[View, list[PreparedImage]],
                         rng: ExamRandomness) -> dict[View, list[Heatmaps]]:
        engine = self.models.heatmap_engine
        if engine is None:
            raise ConfigError("heatmaps need the patch classifier (image_and_heatmaps variant)")
        views = [view for view in VIEWS if view in prepared]
        # All images of the exam in one call: patches are batched across images, and the
        # stride lists are drawn in the same order (views, then images) as one by one.
        flat = engine.exam_heatmaps([img.pixels for v in views for img in prepared[v]],
                                    rng.strides)
        out: dict[View, list[Heatmaps]] = {}
        for view in views:
            out[view], flat = flat[:len(prepared[view])], flat[len(prepared[view]):]
        return out

    def classify(self, variant: str, prepared: Mapping[View, list[PreparedImage]],
                 heatmaps: Mapping[View, list[Heatmaps]] | None, rng: ExamRandomness,
                 ) -> tuple[dict[str, float], dict[View, tuple[float, float]] | None,
                            list[WindowDraw]]:
        model = self.models.breast[variant]
        use_heatmaps = CHANNELS[variant] == 3
        images = {
            view: [
                ClassifierImage(
                    img.pixels, img.best_center,
                    (heatmaps[view][i].benign, heatmaps[view][i].malignant)
                    if use_heatmaps and heatmaps is not None else None,
                )
                for i, img in enumerate(prepared[view])
            ]
            for view in prepared
        }
        augment = self.config.tta > 0
        draws = draw_windows(images, self.config, rng.tta(variant), augment=augment,
                             epochs=max(self.config.tta, 1))
        features = view_features(model, images, draws, self.config, self.models.device,
                                 self.models.dtype)
        if isinstance(model, SplitBreastModel):
            return view_wise_probabilities(model, features), None, draws
        per_view = image_wise_probabilities(model, features)
        return breast_means(per_view), per_view, draws

    def run(self, exam: ExamSource, rng: ExamRandomness,
            prepared: dict[View, list[PreparedImage]] | None = None) -> ExamOutput:
        """Run one exam; `prepared` is stages 1-2, when a caller already did them (e.g. while
        the previous exam was computing)."""
        started = time.perf_counter()
        if prepared is None:
            prepared = self.prepare(exam)
        heatmaps = self.compute_heatmaps(prepared, rng) if self.need_heatmaps else {}
        predictions: dict[str, BreastPredictions] = {}
        per_view_all: dict[str, dict[View, tuple[float, float]]] = {}
        draws: dict[str, list[WindowDraw]] = {}
        for variant in self.models.breast:
            labels, per_view, draws[variant] = self.classify(variant, prepared, heatmaps, rng)
            predictions[variant] = BreastPredictions.from_labels(labels)
            if per_view is not None:
                per_view_all[variant] = per_view
        warnings = list(exam.warnings)
        patch = self.config.patch_size
        if heatmaps:
            warnings += [
                f"{img.source.relative}: cropped image {img.pixels.shape} is smaller than a "
                f"{patch}-px patch; padded with background for the heatmaps"
                for images in prepared.values() for img in images if min(img.pixels.shape) < patch
            ]
        views: dict[str, list[ImageReport]] = {}
        for view in VIEWS:
            reports = []
            for img in prepared[view]:
                warnings.extend(img.warnings)
                view_preds = {
                    variant: Probabilities(benign=pv[view][0], malignant=pv[view][1])
                    for variant, pv in per_view_all.items()
                } or None
                reports.append(ImageReport(
                    source=img.source.relative,
                    crop_window=img.crop.window_location,
                    flipped=img.orientation.needs_flip,
                    orientation_from=img.orientation.decided_by,
                    best_center=img.best_center,
                    distance_from_starting_side=img.crop.distance_from_starting_side,
                    predictions=view_preds,
                    uids=self._uids(img),
                ))
            views[view.value] = reports
        primary = (VARIANT_IMAGE_AND_HEATMAPS if VARIANT_IMAGE_AND_HEATMAPS in predictions
                   else VARIANT_IMAGE_ONLY)
        if not predictions:  # heatmaps only: no breast-level result
            return ExamOutput(None, prepared, heatmaps, draws)
        result = PredictionResult(
            exam_id=exam.exam_id,
            model=self.models.kind.value,
            views=views,
            predictions=predictions,
            primary_variant=primary,
            device=str(self.models.device),
            precision=self.models.precision.value,
            seed=rng.seed,
            rng_mode=self.config.rng_mode.value,
            tta=self.config.tta,
            duration_s=round(time.perf_counter() - started, 3),
            weights=self.models.weights,
            mammocli_version=__version__,
            warnings=warnings,
            skipped_files=[{"file": s.relative, "reason": s.reason} for s in exam.skipped],
        )
        return ExamOutput(result, prepared, heatmaps, draws)


    def _uids(self, image: PreparedImage) -> dict[str, str] | None:
        """DICOM UIDs identify a patient's study: only on explicit request (--include-uids)."""
        if not self.dicom.include_uids or image.source.kind != "dicom":
            return None
        uids = dicom_uids(image.source.path, image.source.relative)
        return {"study": uids.study, "series": uids.series, "sop_instance": uids.sop_instance}


def stored_orientation(heatmap: np.ndarray, image: PreparedImage) -> np.ndarray:
    """Map a canonical heatmap back onto the stored (unflipped) cropped image."""
    return np.ascontiguousarray(to_canonical(heatmap, image.orientation))
