"""The one vocabulary of the package: model families, kinds, variants, flip and random-stream
modes, precisions, exports, the result schema version and the table of weight files.

Light on purpose (no torch, no pydantic): the CLI declares its options with these before any
network is needed, and every layer (weights, train, outputs, families) imports its names from
here rather than spelling them again. A new model family adds its names here, its module under
`mammocli/families/` and one entry in `families.FAMILIES`.
"""

from __future__ import annotations

from enum import Enum

# The version of every document mammocli writes (results, failures, hybrid and evaluation
# reports). 2.0: results name their model family and carry the family's own outputs.
SCHEMA_VERSION = "2.0"
SCHEMA_VERSIONS_READ = ("1.0", SCHEMA_VERSION)  # what `hybrid`/`evaluate` accept


class _Name(str, Enum):
    """A name that formats as its value (Python 3.10 has no StrEnum)."""

    def __str__(self) -> str:
        return str(self.value)


class Family(_Name):
    """A model family: its own networks, weight files, preparation needs and outputs."""

    DMV_CNN = "dmv-cnn"  # Wu et al. 2019, the deep multi-view CNN (view-wise and image-wise)
    GMIC = "gmic"  # Shen et al. 2021, globally-aware multiple instance classifier, per image


class ModelKind(str, Enum):
    """A model of a family (`predict --model`)."""

    VIEW_WISE = "view-wise"
    IMAGE_WISE = "image-wise"
    GMIC = "gmic"  # the GMIC family's one model (its five members are variants)


KIND_FAMILY: dict[ModelKind, Family] = {
    ModelKind.VIEW_WISE: Family.DMV_CNN,
    ModelKind.IMAGE_WISE: Family.DMV_CNN,
    ModelKind.GMIC: Family.GMIC,
}
"""`predict --model` names a model; the model names its family."""


def family_of(kind: ModelKind | str) -> Family:
    return KIND_FAMILY[ModelKind(kind)]


class Variant(_Name):
    """Inputs of a model: keys of `predictions` in results."""

    IMAGE_ONLY = "image_only"
    IMAGE_AND_HEATMAPS = "image_and_heatmaps"
    # GMIC: one variant per official ensemble member (its y_fusion), and their mean.
    GMIC_1 = "gmic_1"
    GMIC_2 = "gmic_2"
    GMIC_3 = "gmic_3"
    GMIC_4 = "gmic_4"
    GMIC_5 = "gmic_5"
    GMIC_ENSEMBLE = "gmic_ensemble"  # computed from the members run, never asked for alone


class Export(_Name):
    """Arrays a family can hand out besides its result (written by `outputs/`)."""

    HEATMAPS = "heatmaps"  # DMV-CNN: benign/malignant patch-classifier heatmaps per image
    SALIENCY = "saliency"  # GMIC: benign/malignant saliency maps, patches, window geometry


PICTURE_EXPORT: dict[Family, Export] = {
    Family.DMV_CNN: Export.HEATMAPS,
    Family.GMIC: Export.SALIENCY,
}
"""What `predict --save-heatmaps` writes for a family (its per-image maps)."""


class RngMode(str, Enum):
    """How random streams span the exams of a run.

    EXAM: every exam starts from the seed, so its result does not depend on the other exams.
    RUN: one stream across all exams in order, as the authors' scripts do (compatibility mode).
    """

    EXAM = "exam"
    RUN = "run"


class FlipMode(str, Enum):
    """The authors' `horizontal_flip`: NO = L views face right, R views face left as stored."""

    AUTO = "auto"
    NO = "no"
    YES = "yes"


class Precision(str, Enum):
    FP32 = "fp32"
    BF16 = "bf16"  # networks in bfloat16; inputs standardised in fp32 first, outputs back in fp32
    TF32 = "tf32"  # CUDA only: fp32 tensors, TensorFloat-32 matmuls and convolutions


# Official weight files (= their names in the authors' repository and in a --weights-dir).
PATCH_WEIGHTS = "sample_patch_model.p"  # DMV-CNN patch classifier: heatmaps, shared by its kinds
WEIGHT_FILES: dict[tuple[Family, ModelKind, Variant], str] = {
    (Family.DMV_CNN, ModelKind.VIEW_WISE, Variant.IMAGE_ONLY): "sample_image_model.p",
    (Family.DMV_CNN, ModelKind.VIEW_WISE, Variant.IMAGE_AND_HEATMAPS):
        "sample_imageheatmaps_model.p",
    (Family.DMV_CNN, ModelKind.IMAGE_WISE, Variant.IMAGE_ONLY): "ImageOnly__ModeImage_weights.p",
    (Family.DMV_CNN, ModelKind.IMAGE_WISE, Variant.IMAGE_AND_HEATMAPS):
        "ImageHeatmaps__ModeImage_weights.p",
    **{(Family.GMIC, ModelKind.GMIC, Variant(f"gmic_{i}")): f"sample_model_{i}.p"
       for i in range(1, 6)},
}
"""(family, kind, variant) -> the network file of that model."""


def weight_file(kind: ModelKind, variant: Variant, family: Family = Family.DMV_CNN) -> str:
    return WEIGHT_FILES[(family, kind, variant)]


GMIC_MEMBERS: dict[int, Variant] = {i: Variant(f"gmic_{i}") for i in range(1, 6)}
"""GMIC ensemble member index (the authors' --model-index) -> its variant."""


def parse_variant(text: str) -> Variant:
    """A variant as users spell it: image-only / image_only, image-and-heatmaps / ..."""
    return Variant(text.strip().lower().replace("-", "_"))
