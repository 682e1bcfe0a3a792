"""The result schema (pydantic) and its JSON/CSV renderings.

Named fields only, never positional columns: the authors' code once shipped swapped columns.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, model_validator

from ..views import LABELS, View
from ..vocabulary import SCHEMA_VERSION, Family, ModelKind, Precision, RngMode, Variant
from .weights_used import WeightsUsed

SchemaVersion = Literal["2.0"]  # = SCHEMA_VERSION; a test checks they agree
OrientationFrom = Literal["exam", "auto", "dicom"]  # exam.yaml / --horizontal-flip, tissue, header


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


class Uids(_Frozen):
    """DICOM identifiers of an image, only with --include-uids (identifying data)."""

    study: str
    series: str
    sop_instance: str


class SkippedRecord(_Frozen):
    file: str  # relative to the exam folder
    reason: str


class ImageReport(_Frozen):
    source: str  # relative to the exam folder
    crop_window: tuple[int, int, int, int]  # (top, bottom, left, right) in the stored image
    flipped: bool  # mirrored to canonical orientation (breast facing right)
    orientation_from: OrientationFrom
    best_center: tuple[int, int]  # (row, col) in the cropped, canonical image
    distance_from_starting_side: int
    predictions: dict[Variant, Probabilities] | None = None  # per-image models only
    # The family's own per-image outputs (e.g. GMIC's patch boxes); None for the DMV-CNN.
    outputs: dict[str, JsonValue] | None = None
    uids: Uids | None = None  # DICOM Study/Series/SOP Instance UIDs, opt-in only
    # Allow-listed, non-identifying DICOM fields (device, geometry, exposure); None for PNG.
    header: dict[str, HeaderValue] | None = None
    image: ImageStats | None = None


HeaderValue = str | float  # an allow-listed DICOM header field: text, or a number


class ImageStats(_Frozen):
    """What the image itself says, for the shift report (`evaluate --by-header`): stored size,
    and the mean intensity of the tissue (nonzero pixels of the crop) as a fraction of the
    16-bit range the pixels are read into."""

    rows: int
    columns: int
    tissue_mean: float = Field(ge=0.0, le=1.0)


class CalibratedProbabilities(_Frozen):
    left: float
    right: float
    exam: float  # the higher breast


class Flag(_Frozen):
    operating_point: str
    level: Literal["exam", "breast"]
    threshold: float  # on the raw malignant probability
    left: bool
    right: bool
    exam: bool  # either breast flagged


class SiteOutputs(_Frozen):
    """What a site file (`predict --site`) adds to a result: calibrated malignant probabilities
    and the flag at each operating point. The result's raw probabilities stay as they are."""

    site_created: datetime
    method: str
    calibrated_malignant: CalibratedProbabilities
    flags: list[Flag]


class InputRef(_Frozen):
    """The input a result came from, without identifying it: the exam folder relative to the
    PATH given to predict, and sha256 of its image files' relative names and sizes."""

    folder: str
    fingerprint: str


def _upgrade(data: Any) -> Any:
    """A record of schema 1.0 (mammocli 0.1, the DMV-CNN only) as 2.0: the same fields, and
    the family it came from. Files written by earlier runs stay readable (hybrid, evaluate,
    --resume)."""
    if isinstance(data, dict) and data.get("schema_version") == "1.0":
        data = {**data, "schema_version": SCHEMA_VERSION}
        if data.get("status") == "ok":
            data.setdefault("family", Family.DMV_CNN.value)
    return data


class PredictionResult(_Frozen):
    """Schema 2.0. Reading also accepts 1.0 records (see `_upgrade`)."""

    schema_version: SchemaVersion = SCHEMA_VERSION  # type: ignore[assignment]
    status: Literal["ok"] = "ok"
    exam_id: str
    family: Family
    model: ModelKind  # the model of the family
    views: dict[View, list[ImageReport]]
    predictions: dict[Variant, BreastPredictions]
    primary_variant: Variant
    # The family's own exam-level outputs, beyond the per-breast probabilities.
    outputs: dict[str, JsonValue] | None = None
    device: str
    precision: Precision = Precision.FP32
    seed: int
    rng_mode: RngMode
    tta: int = Field(ge=0)
    duration_s: float
    weights: list[WeightsUsed]
    mammocli_version: str
    warnings: list[str] = []
    skipped_files: list[SkippedRecord] = []
    input: InputRef | None = None
    # The exam's summary of its images' header fields and statistics (text: the value all
    # images share, else "mixed"; numbers: the median), for `evaluate --by-header`.
    header: dict[str, HeaderValue] | None = None
    site: SiteOutputs | None = None  # with `predict --site`

    @model_validator(mode="before")
    @classmethod
    def read_schema_1_0(cls, data: Any) -> Any:
        return _upgrade(data)

    @property
    def primary(self) -> BreastPredictions:
        return self.predictions[self.primary_variant]


class ExamFailure(_Frozen):
    schema_version: SchemaVersion = SCHEMA_VERSION  # type: ignore[assignment]
    status: Literal["failed"] = "failed"
    exam_id: str
    error: str
    hint: str | None = None
    exit_code: int
    input: InputRef | None = None

    @model_validator(mode="before")
    @classmethod
    def read_schema_1_0(cls, data: Any) -> Any:
        return _upgrade(data)


def printable(text: str) -> str:
    """A string safe for JSON, CSV and the console: bytes of a non-UTF-8 file name (held as
    surrogates by Python) appear as \\xNN, e.g. b"caf\\xe9" -> "caf\\xe9"."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _printable_tree(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _printable_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable_tree(v) for v in value]
    if isinstance(value, datetime):  # site outputs' date
        return value.isoformat()
    return value


def to_json(record: PredictionResult | ExamFailure, indent: int | None = None) -> str:
    """One record as JSON; every string field (file names included) made printable."""
    data = _printable_tree(record.model_dump(mode="python"))
    if indent is None:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(data, ensure_ascii=False, indent=indent)


CSV_HEADER = ["exam_id", *LABELS]


def csv_row(result: PredictionResult, variant: Variant | None = None) -> list[str]:
    values = result.predictions[variant or result.primary_variant].as_labels()
    return [printable(result.exam_id), *(f"{values[k]:.4f}" for k in LABELS)]


IMAGE_CSV_HEADER = ["exam_id", "view", "file", "variant", "benign", "malignant"]


def image_csv_rows(result: PredictionResult) -> list[list[str]]:
    """One row per image with per-image predictions of the primary variant (GMIC, the
    image-wise DMV-CNN), views in the authors' order, 4 decimals as their CSVs."""
    rows = []
    variant = result.primary_variant
    for view, images in result.views.items():
        for image in images:
            values = (image.predictions or {}).get(variant)
            if values is not None:
                rows.append([printable(result.exam_id), view.value, printable(image.source),
                             variant.value, f"{values.benign:.4f}", f"{values.malignant:.4f}"])
    return rows


def rows_to_csv(rows: list[list[str]], header: list[str] = CSV_HEADER) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def to_csv(results: list[PredictionResult], variant: Variant | None = None) -> str:
    """The authors' four columns with `exam_id` first, 4 decimals as their CSVs."""
    return rows_to_csv([csv_row(r, variant) for r in results])


# --- the committed JSON Schema -----------------------------------------------------------------

SCHEMA_FILE = Path(__file__).with_name("result.schema.json")  # shipped as package data


def json_schema() -> dict[str, Any]:
    """The JSON Schema of one record (a result or a failure, told apart by `status`), generated
    from the models above. Regenerate the committed file with `python -m mammocli.outputs.schema`
    (a test fails when the models and the file differ)."""
    record = Annotated[PredictionResult | ExamFailure, Field(discriminator="status")]
    schema = TypeAdapter(record).json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"mammocli result record, schema {SCHEMA_VERSION}",
        **schema,
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    from .files import atomic_write_text

    atomic_write_text(path, schema_text())
    return path


if __name__ == "__main__":  # python -m mammocli.outputs.schema [PATH]
    import sys

    print(f"wrote {write_schema(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_FILE)}")
