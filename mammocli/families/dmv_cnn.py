"""The DMV-CNN family (Wu et al. 2019): view-wise and image-wise breast models, each with an
image-only and an image-and-heatmaps variant; a patch classifier computes the heatmaps.

Stages: prepared views -> heatmaps (patch classifier, when a variant or an export needs them)
-> breast model with test-time augmentation -> per-breast (and, image-wise, per-image)
probabilities. The maths lives in `inference.heatmaps` and `inference.classify`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..config import PipelineConfig
from ..errors import ConfigError
from ..inference.classify import (
    ClassifierImage,
    WindowDraw,
    breast_means,
    draw_windows,
    image_wise_probabilities,
    view_features,
    view_wise_probabilities,
)
from ..inference.family import ImageOutput, Inference, Locate, Prepared
from ..inference.heatmaps import HeatmapEngine, Heatmaps
from ..inference.precision import configure
from ..inference.randomness import ExamRandomness
from ..models.breast import ImageBreastModel, SplitBreastModel
from ..models.loading import load_image_wise, load_patch_classifier, load_view_wise
from ..outputs.schema import BreastPredictions, Probabilities
from ..outputs.weights_used import WeightsUsed
from ..preprocess.prepare import PreparedImage
from ..reporting import stage
from ..views import VIEWS, View
from ..vocabulary import (
    PATCH_WEIGHTS,
    Export,
    Family,
    ModelKind,
    Precision,
    Variant,
    weight_file,
)
from ..weights.fetch import weights_used

CHANNELS = {Variant.IMAGE_ONLY: 1, Variant.IMAGE_AND_HEATMAPS: 3}
PRIMARY = (Variant.IMAGE_AND_HEATMAPS, Variant.IMAGE_ONLY)  # the first one computed is primary


class DmvCnn:
    """The family object registered in `families.FAMILIES`."""

    name = Family.DMV_CNN
    kinds = (ModelKind.VIEW_WISE, ModelKind.IMAGE_WISE)
    variants = (Variant.IMAGE_ONLY, Variant.IMAGE_AND_HEATMAPS)
    exports = frozenset({Export.HEATMAPS})

    def weight_files(self, kind: ModelKind, variants: tuple[Variant, ...],
                     exports: frozenset[Export] = frozenset()) -> list[str]:
        names = [PATCH_WEIGHTS] if Export.HEATMAPS in exports \
            or Variant.IMAGE_AND_HEATMAPS in variants else []
        return names + [weight_file(kind, v) for v in variants]

    def preparation(self, config: PipelineConfig) -> PipelineConfig:
        return config  # the pipeline config's windows are the DMV-CNN's (SPEC 0)

    def load(self, kind: ModelKind, variants: tuple[Variant, ...], locate: Locate,
             device: torch.device, config: PipelineConfig, *,
             precision: Precision = Precision.FP32,
             exports: frozenset[Export] = frozenset()) -> DmvCnnModels:
        return DmvCnnModels.load(kind, variants, locate, device, config,
                                 patch_classifier=Export.HEATMAPS in exports,
                                 precision=precision)


FAMILY = DmvCnn()


@dataclass
class DmvCnnModels:
    """The loaded networks of one run, on their device."""

    kind: ModelKind
    device: torch.device
    breast: dict[Variant, SplitBreastModel | ImageBreastModel]
    heatmap_engine: HeatmapEngine | None
    weights: list[WeightsUsed] = field(default_factory=list)
    precision: Precision = Precision.FP32

    @property
    def family(self) -> DmvCnn:
        return FAMILY

    @classmethod
    def load(cls, kind: ModelKind, variants: tuple[Variant | str, ...], locate: Locate,
             device: torch.device, config: PipelineConfig, *,
             patch_classifier: bool = False,
             precision: Precision | str = Precision.FP32) -> DmvCnnModels:
        """`locate(name)` gives the local path of an official weight file (downloading it if
        need be). The patch classifier is loaded when a variant or the caller needs heatmaps.
        `precision` other than fp32 is an opt-in approximation (see `precision.configure`)."""
        precision = Precision(precision)
        try:
            chosen = tuple(Variant(v) for v in variants)
        except ValueError:
            raise ConfigError(f"unknown variant(s) in {list(variants)}; choose from "
                              f"{', '.join(v.value for v in FAMILY.variants)}") from None
        dtype = configure(precision, device)
        used = []
        engine = None
        exports = frozenset({Export.HEATMAPS}) if patch_classifier else frozenset()
        if PATCH_WEIGHTS in FAMILY.weight_files(kind, chosen, exports):
            path = locate(PATCH_WEIGHTS)
            used.append(weights_used(PATCH_WEIGHTS, path))
            engine = HeatmapEngine(load_patch_classifier(path), device,
                                   patch_size=config.patch_size, stride=config.patch_stride,
                                   batch_size=config.heatmap_batch_size, dtype=dtype)
        breast: dict[Variant, SplitBreastModel | ImageBreastModel] = {}
        for variant in chosen:
            name = weight_file(kind, variant)
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

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision is Precision.BF16 else torch.float32

    def needs_heatmaps(self, exports: frozenset[Export] = frozenset()) -> bool:
        return Export.HEATMAPS in exports or Variant.IMAGE_AND_HEATMAPS in self.breast

    def compute_heatmaps(self, prepared: Mapping[View, list[PreparedImage]],
                         rng: ExamRandomness) -> dict[View, list[Heatmaps]]:
        engine = self.heatmap_engine
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

    def classify(self, variant: Variant | str, prepared: Mapping[View, list[PreparedImage]],
                 heatmaps: Mapping[View, list[Heatmaps]] | None, rng: ExamRandomness,
                 config: PipelineConfig,
                 ) -> tuple[dict[str, float], dict[View, tuple[float, float]] | None,
                            list[WindowDraw]]:
        """One breast model with test-time augmentation: the authors' four labels, and for
        the image-wise model the per-view (benign, malignant) values."""
        variant = Variant(variant)
        model = self.breast[variant]
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
        augment = config.tta > 0
        draws = draw_windows(images, config, rng.tta(variant.value), augment=augment,
                             epochs=max(config.tta, 1))
        features = view_features(model, images, draws, config, self.device, self.dtype)
        if isinstance(model, SplitBreastModel):
            return view_wise_probabilities(model, features), None, draws
        per_view = image_wise_probabilities(model, features)
        return breast_means(per_view), per_view, draws

    def infer(self, prepared: Prepared, rng: ExamRandomness, config: PipelineConfig,
              exports: frozenset[Export]) -> Inference:
        started = time.perf_counter()
        heatmaps = self.compute_heatmaps(prepared, rng) if self.needs_heatmaps(exports) else {}
        classify_from = time.perf_counter()
        stage("classify")
        predictions: dict[Variant, BreastPredictions] = {}
        per_view_all: dict[Variant, dict[View, tuple[float, float]]] = {}
        for variant in self.breast:
            labels, per_view, _ = self.classify(variant, prepared, heatmaps, rng, config)
            predictions[variant] = BreastPredictions.from_labels(labels)
            if per_view is not None:
                per_view_all[variant] = per_view
        timings = {"heatmaps": classify_from - started,
                   "classify": time.perf_counter() - classify_from}
        warnings = []
        if heatmaps:
            patch = config.patch_size
            warnings = [
                f"{img.source.relative}: cropped image {img.pixels.shape} is smaller than a "
                f"{patch}-px patch; padded with background for the heatmaps"
                for images in prepared.values() for img in images if min(img.pixels.shape) < patch
            ]
        # The image-wise model gives one value per view: every image of the view reports it.
        images = {
            view: [ImageOutput(predictions={
                variant: Probabilities(benign=pv[view][0], malignant=pv[view][1])
                for variant, pv in per_view_all.items()} or None)
                for _ in prepared[view]]
            for view in prepared
        }
        primary = next((v for v in PRIMARY if v in predictions), None)
        return Inference(predictions, primary, images,
                         {Export.HEATMAPS: heatmaps} if heatmaps else {}, warnings,
                         tta=config.tta, timings=timings)
