"""The GMIC family (Shen et al. 2021): one model, five official ensemble members, predictions
per image (gmic/SPEC.md 9-10).

Stages: prepared views (our crop and best centre with GMIC's 2944 x 1920 window) -> one
standardised window per image, shared by every member -> the exam's images through each member
as one batch -> per image y_fusion (the authors' prediction), six patch boxes and their
attention; per breast the mean of its CC and MLO values. The maths lives in
`families.gmic_inference`.

Our choices where the authors' code is silent or narrower (README "Models"):
* every image of a view is classified, not only the first; a view's value is the mean of its
  images, and a breast's the mean of its CC and MLO values (the authors report images only);
* the ensemble is the mean of the chosen members' y_fusion per image (their `ensemble` mode);
* y_global and y_local, computed but never reported by the authors, are kept in the image's
  `outputs` for inspection; they are not predictions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import JsonValue

from ..config import PipelineConfig
from ..errors import ConfigError
from ..inference.family import ImageOutput, Inference, Locate, Prepared
from ..inference.precision import configure
from ..inference.randomness import ExamRandomness
from ..models.gmic import GMIC
from ..outputs.schema import BreastPredictions, Probabilities
from ..outputs.weights_used import WeightsUsed
from ..preprocess.gmic import gmic_pipeline_config
from ..preprocess.prepare import PreparedImage
from ..reporting import stage
from ..views import VIEWS, Angle, Side, View
from ..vocabulary import (
    GMIC_MEMBERS,
    Export,
    Family,
    ModelKind,
    Precision,
    Variant,
    weight_file,
)
from ..weights.fetch import weights_used
from .gmic_inference import (
    ImageSaliency,
    image_saliency,
    load_gmic_members,
    patch_boxes,
    predict_images,
    to_precision,
)

MEMBER_OF: dict[Variant, int] = {variant: index for index, variant in GMIC_MEMBERS.items()}
BATCH = 4  # images per forward pass: the four views of an exam, memory bounded beyond that
BREAST_RULE = ("per image: y_fusion (mean over the members); per view: the mean of its "
               "images; per breast: the mean of its CC and MLO views")


class Gmic:
    """The family object registered in `families.FAMILIES`."""

    name = Family.GMIC
    kinds = (ModelKind.GMIC,)
    variants = tuple(GMIC_MEMBERS.values())  # every member: the authors' 5-model ensemble
    # Saliency maps, patches and window geometry per image, for --save-heatmaps and --preview:
    # already computed for the prediction, so asking for them costs only the copies.
    exports: frozenset[Export] = frozenset({Export.SALIENCY})

    def weight_files(self, kind: ModelKind, variants: tuple[Variant, ...],
                     exports: frozenset[Export] = frozenset()) -> list[str]:
        return [weight_file(kind, v, Family.GMIC) for v in variants]

    def preparation(self, config: PipelineConfig) -> PipelineConfig:
        # Stages 1-2 are the DMV-CNN's with GMIC's one window for every view (SPEC 2); the
        # network accepts no other size, so a pipeline config cannot change it.
        return gmic_pipeline_config(config)

    def load(self, kind: ModelKind, variants: tuple[Variant, ...], locate: Locate,
             device: torch.device, config: PipelineConfig, *,
             precision: Precision = Precision.FP32,
             exports: frozenset[Export] = frozenset()) -> GmicModels:
        if kind is not ModelKind.GMIC:
            raise ConfigError(f"the gmic family has no {kind.value} model", hint="use gmic")
        unknown = [v.value for v in variants if v not in MEMBER_OF]
        if unknown or not variants:
            raise ConfigError(f"not GMIC members: {', '.join(unknown) or 'none given'}",
                              hint="choose among gmic_1 ... gmic_5 (--gmic-models 1,...,5)")
        dtype = configure(precision, device)
        names = {MEMBER_OF[v]: weight_file(kind, v, Family.GMIC) for v in variants}
        paths = {member: locate(name) for member, name in names.items()}
        members = {member: to_precision(model, device, dtype)
                   for member, model in load_gmic_members(paths).items()}
        used = [weights_used(names[m], paths[m]) for m in names]
        return GmicModels(members, device, Precision(precision), used)


FAMILY = Gmic()


def _probabilities(values: Sequence[float] | np.ndarray) -> Probabilities:
    # float32 sigmoids can round to exactly 0 or 1; the schema bounds are inclusive.
    return Probabilities(benign=float(values[0]), malignant=float(values[1]))


def _pair(values: torch.Tensor) -> dict[str, JsonValue]:
    return {"benign": float(values[0]), "malignant": float(values[1])}


def breast_means(per_view: Mapping[View, np.ndarray]) -> BreastPredictions:
    """(benign, malignant) per view -> per breast the mean of its CC and MLO views."""
    sides = {}
    for side in (Side.LEFT, Side.RIGHT):
        values = [per_view[View.of(side, angle)] for angle in (Angle.CC, Angle.MLO)]
        sides[side] = _probabilities(np.mean(values, axis=0))
    return BreastPredictions(left=sides[Side.LEFT], right=sides[Side.RIGHT])


@dataclass
class GmicModels:
    """The chosen members, loaded on one device."""

    members: dict[int, GMIC]  # member index (1..5) -> network, in the order asked
    device: torch.device
    precision: Precision = Precision.FP32
    weights: list[WeightsUsed] = field(default_factory=list)
    kind: ModelKind = ModelKind.GMIC

    @property
    def family(self) -> Gmic:
        return FAMILY

    @property
    def primary(self) -> Variant:
        if len(self.members) == 1:
            return GMIC_MEMBERS[next(iter(self.members))]
        return Variant.GMIC_ENSEMBLE

    def predict_images(self, images: Sequence[PreparedImage],
                       saliency: list[ImageSaliency] | None = None,
                       ) -> tuple[dict[Variant, np.ndarray], list[dict[str, JsonValue]]]:
        """Images (any views) -> per variant the (N, 2) y_fusion of each member and, with
        several members, their mean (`gmic_ensemble`); per image each member's patches
        (original-image boxes, attention), y_global and y_local, keyed by member index.
        `saliency`, when given, receives per image its maps and window (`ImageSaliency`)."""
        y_fusion: dict[Variant, list[np.ndarray]] = {}
        extras: list[dict[str, JsonValue]] = [{} for _ in images]
        for start in range(0, len(images), BATCH):
            chunk = images[start:start + BATCH]
            ensemble, windows = predict_images(self.members, chunk)
            if saliency is not None:
                saliency.extend(image_saliency(ensemble, windows))
            for member, out in ensemble.members.items():
                y_fusion.setdefault(GMIC_MEMBERS[member], []).extend(out.y_fusion.numpy())
                for i, (image, window) in enumerate(zip(chunk, windows, strict=True)):
                    boxes = patch_boxes(image, window, out.patch_locations[i])
                    extras[start + i][str(member)] = {
                        "patches": [
                            {"box": [int(v) for v in box], "attention": float(alpha)}
                            for box, alpha in zip(boxes, out.attention[i].tolist(),
                                                  strict=True)],
                        "y_global": _pair(out.y_global[i]),
                        "y_local": _pair(out.y_local[i]),
                    }
            if len(self.members) > 1:
                y_fusion.setdefault(Variant.GMIC_ENSEMBLE, []).extend(ensemble.y_fusion.numpy())
        return {v: np.stack(values) for v, values in y_fusion.items()}, extras

    def infer(self, prepared: Prepared, rng: ExamRandomness, config: PipelineConfig,
              exports: frozenset[Export]) -> Inference:
        """No random numbers: GMIC's window has no noise and no test-time augmentation."""
        del rng, config
        views = [view for view in VIEWS if view in prepared]
        maps: list[ImageSaliency] | None = [] if Export.SALIENCY in exports else None
        stage("classify")
        y_fusion, extras = self.predict_images([img for v in views for img in prepared[v]],
                                               maps)
        per_image: dict[View, list[ImageOutput]] = {}
        per_view: dict[Variant, dict[View, np.ndarray]] = {v: {} for v in y_fusion}
        at = 0
        for view in views:
            count = len(prepared[view])
            per_image[view] = [
                ImageOutput(predictions={v: _probabilities(values[i])
                                         for v, values in y_fusion.items()},
                            outputs={"members": extras[i]})
                for i in range(at, at + count)]
            for variant, values in y_fusion.items():
                per_view[variant][view] = values[at:at + count].mean(axis=0)
            at += count
        predictions = {variant: breast_means(views_of) for variant, views_of in per_view.items()}
        outputs: dict[str, JsonValue] = {
            "members": list(self.members), "primary": self.primary.value,
            "breast_rule": BREAST_RULE,
            "patch_boxes": "per member six patches of 256 x 256 window pixels, in selection "
                           "order: box = [top, bottom, left, right] half-open in the stored "
                           "image, clipped to it (empty when the patch lies in the padding)",
        }
        exported: dict[Export, object] = {}
        if maps is not None:  # per view, in the order of its prepared images
            starts = np.cumsum([0] + [len(prepared[v]) for v in views])
            exported[Export.SALIENCY] = {view: maps[starts[k]:starts[k + 1]]
                                         for k, view in enumerate(views)}
        return Inference(predictions, self.primary, per_image, exported, [], outputs, tta=0)
