"""The result schema (pydantic) and its JSON/CSV renderings.

Named fields only, never positional columns: the authors' code once shipped swapped columns.
"""

from __future__ import annotations

import csv
import io
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .views import LABELS

SCHEMA_VERSION = "1.0"

VARIANT_IMAGE_ONLY = "image_only"
VARIANT_IMAGE_AND_HEATMAPS = "image_and_heatmaps"
PRIMARY_VARIANT = VARIANT_IMAGE_AND_HEATMAPS


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Probabilities(_Frozen):
    benign: float = Field(ge=0.0, le=1.0)
    malignant: float = Field(ge=0.0, le=1.0)


class BreastPredictions(_Frozen):
    left: Probabilities
    right: Probabilities

    def as_labels(self) -> dict[str, float]:
        """The authors' four columns."""
        return {
            "left_benign": self.left.benign,
            "right_benign": self.right.benign,
            "left_malignant": self.left.malignant,
            "right_malignant": self.right.malignant,
        }

    @classmethod
    def from_labels(cls, values: dict[str, float]) -> BreastPredictions:
        return cls(
            left=Probabilities(benign=values["left_benign"], malignant=values["left_malignant"]),
            right=Probabilities(benign=values["right_benign"], malignant=values["right_malignant"]),
        )


class ImageReport(_Frozen):
    source: str  # relative to the exam folder
    crop_window: tuple[int, int, int, int]  # (top, bottom, left, right) in the stored image
    flipped: bool  # mirrored to canonical orientation (breast facing right)
    orientation_from: str  # "exam" (horizontal_flip), "auto" (tissue side) or "dicom"
    best_center: tuple[int, int]  # (row, col) in the cropped, canonical image
    distance_from_starting_side: int
    predictions: dict[str, Probabilities] | None = None  # image-wise model only
    uids: dict[str, str] | None = None  # DICOM Study/Series/SOP Instance UIDs, opt-in only


class WeightsUsed(_Frozen):
    name: str
    sha256: str
    path: str | None = None


class PredictionResult(_Frozen):
    schema_version: str = SCHEMA_VERSION
    status: Literal["ok"] = "ok"
    exam_id: str
    model: Literal["view-wise", "image-wise"]
    views: dict[str, list[ImageReport]]
    predictions: dict[str, BreastPredictions]
    primary_variant: str
    device: str
    precision: str = "fp32"
    seed: int
    rng_mode: str
    tta: int
    duration_s: float
    weights: list[WeightsUsed]
    mammocli_version: str
    warnings: list[str] = []
    skipped_files: list[dict[str, str]] = []

    @property
    def primary(self) -> BreastPredictions:
        return self.predictions[self.primary_variant]


class ExamFailure(_Frozen):
    schema_version: str = SCHEMA_VERSION
    status: Literal["failed"] = "failed"
    exam_id: str
    error: str
    hint: str | None = None
    exit_code: int


def to_csv(results: list[PredictionResult], variant: str | None = None) -> str:
    """The authors' four columns with `exam_id` first, 4 decimals as their CSVs."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["exam_id", *LABELS])
    for r in results:
        values = r.predictions[variant or r.primary_variant].as_labels()
        writer.writerow([r.exam_id, *(f"{values[k]:.4f}" for k in LABELS)])
    return buf.getvalue()
