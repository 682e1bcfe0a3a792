"""The model kinds and the official weight file each role reads. Light on purpose (no torch):
the CLI declares its options with these before any network is needed. `pipeline` re-exports
them."""

from __future__ import annotations

from enum import Enum

from .outputs.schema import VARIANT_IMAGE_AND_HEATMAPS, VARIANT_IMAGE_ONLY


class ModelKind(str, Enum):
    VIEW_WISE = "view-wise"
    IMAGE_WISE = "image-wise"


VARIANTS = (VARIANT_IMAGE_ONLY, VARIANT_IMAGE_AND_HEATMAPS)
PATCH_WEIGHTS = "sample_patch_model.p"
BREAST_WEIGHTS = {
    (ModelKind.VIEW_WISE, VARIANT_IMAGE_ONLY): "sample_image_model.p",
    (ModelKind.VIEW_WISE, VARIANT_IMAGE_AND_HEATMAPS): "sample_imageheatmaps_model.p",
    (ModelKind.IMAGE_WISE, VARIANT_IMAGE_ONLY): "ImageOnly__ModeImage_weights.p",
    (ModelKind.IMAGE_WISE, VARIANT_IMAGE_AND_HEATMAPS): "ImageHeatmaps__ModeImage_weights.p",
}
