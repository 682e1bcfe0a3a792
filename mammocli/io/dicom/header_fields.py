"""The non-identifying DICOM header fields collected at discovery, for subgrouping (the shift
report of `evaluate --by-header`), and an exam's summary of its images' fields.

A fixed allow-list: device, detector, geometry and exposure. Nothing that names or dates a
person, a study or a place (no StationName, InstitutionName, DeviceSerialNumber, UIDs, dates).
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

HeaderValue = str | float  # = outputs.schema.HeaderValue (io does not import outputs)

# The allow-list: device, detector, geometry and exposure. Nothing that names or dates a person,
# a study or a place (no StationName, InstitutionName, DeviceSerialNumber, UIDs, dates).
TEXT_FIELDS: tuple[str, ...] = (
    "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "DetectorType",
    "PresentationIntentType", "PhotometricInterpretation", "AnodeTargetMaterial",
    "FilterMaterial",
)
NUMBER_FIELDS: tuple[str, ...] = (
    "PixelSpacing", "ImagerPixelSpacing", "Rows", "Columns", "BitsStored", "KVP", "Exposure",
    "ExposureInuAs", "ExposureTime", "XRayTubeCurrent", "BodyPartThickness", "CompressionForce",
    "RelativeXRayExposure",
)
# "RowsxColumns", and the tissue's mean intensity (a fraction of the 16-bit range) of the image
DERIVED_FIELDS: tuple[str, ...] = ("ImageSize", "TissueMean")
ALLOWED_FIELDS: tuple[str, ...] = TEXT_FIELDS + NUMBER_FIELDS + DERIVED_FIELDS


def _number(value: Any) -> float | None:
    """A finite float from a DS/IS/US value or the first of a multi-value; None otherwise."""
    if value is None or isinstance(value, bytes | bytearray):
        return None
    if not isinstance(value, str) and isinstance(value, Sequence):
        if len(value) == 0:
            return None
        value = value[0]  # PixelSpacing: row spacing (mammograms have square pixels)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bytes | bytearray):
        return None
    if not isinstance(value, str) and isinstance(value, Sequence):
        value = "\\".join(str(v) for v in value)  # e.g. SoftwareVersions, as DICOM joins them
    text = " ".join(str(value).split())
    return text or None


def header_fields(ds: Any) -> dict[str, HeaderValue]:
    """The allow-listed, non-identifying fields present in a pydicom Dataset: text stripped,
    numbers as floats. Absent, empty or malformed values are left out (never raised)."""
    out: dict[str, HeaderValue] = {}
    for name in (*TEXT_FIELDS, *NUMBER_FIELDS):
        try:
            with warnings.catch_warnings():  # pydicom warns on invalid values: stay silent
                warnings.simplefilter("ignore")
                raw = ds.get(name)
                value = getattr(raw, "value", raw)
            parsed: HeaderValue | None = _text(value) if name in TEXT_FIELDS else _number(value)
        except Exception:  # noqa: BLE001 - a malformed element is absent for subgrouping
            parsed = None
        if parsed is not None:
            out[name] = parsed
    rows, cols = out.get("Rows"), out.get("Columns")
    if isinstance(rows, float) and isinstance(cols, float):
        out["ImageSize"] = f"{rows:g}x{cols:g}"
    return out


def exam_header(views: Sequence[Mapping[str, HeaderValue]]) -> dict[str, HeaderValue]:
    """One exam's fields from its images': text the value all images share ("mixed" when they
    differ), numbers the median (KVP and exposure differ between views)."""
    out: dict[str, HeaderValue] = {}
    for name in ALLOWED_FIELDS:
        values = [v[name] for v in views if name in v]
        if not values:
            continue
        if all(isinstance(v, float) for v in values):
            out[name] = float(statistics.median(float(v) for v in values))
        else:
            texts = {str(v) for v in values}
            out[name] = texts.pop() if len(texts) == 1 else "mixed"
    return out




def image_fields(header: Mapping[str, HeaderValue], rows: int, columns: int,
                 tissue_mean: float) -> dict[str, HeaderValue]:
    """One image's fields for subgrouping: its header's, and what the pixels say (the size of
    a PNG, which has no header; the tissue's mean intensity)."""
    out = dict(header)
    out.setdefault("Rows", float(rows))
    out.setdefault("Columns", float(columns))
    out.setdefault("ImageSize", f"{rows}x{columns}")
    out["TissueMean"] = tissue_mean
    return out
