"""Typed records of what discovery found: exams, their image files, and files left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..config import FlipMode
from ..views import VIEWS, Side, View


@dataclass(frozen=True)
class DicomUids:
    """Identifiers, for `--include-uids` only: never put these in logs or default outputs."""

    study: str
    series: str
    sop_instance: str


@dataclass(frozen=True)
class ImageSource:
    """One image file assigned to a view."""

    path: Path
    relative: str  # path relative to the exam folder: safe for messages and results
    view: View
    kind: str = "png"  # "png" | "dicom"
    # Stored facing direction when the file itself says so (DICOM PatientOrientation);
    # None: decided by the flip mode.
    facing: Side | None = None
    # DICOM UIDs, read once at discovery and only under --include-uids (identifying data).
    uids: DicomUids | None = None
    # Allow-listed, non-identifying DICOM fields (io/dicom/header_fields.py), read at discovery
    # for the shift report; empty for PNG.
    header: tuple[tuple[str, str | float], ...] = ()


InputKind = Literal["png", "dicom"]


@dataclass(frozen=True)
class SkippedFile:
    """A file discovery found and did not use, with the reason (safe for messages: no header
    values) and, where one exists, the option that would admit it (e.g. --allow-secondary-capture).
    """

    relative: str
    reason: str
    admit_with: str | None = None


@dataclass(frozen=True)
class ExamProblem:
    """Why an exam that discovery found cannot run (e.g. an invalid exam.yaml). The exam then
    fails alone, with this message, instead of ending the whole batch."""

    message: str
    hint: str | None = None


@dataclass(frozen=True)
class ExamSource:
    """An exam as found on disk; pixels are read later, one view at a time."""

    exam_id: str
    folder: Path
    images: dict[View, tuple[ImageSource, ...]]
    horizontal_flip: FlipMode | None = None  # from exam.yaml, overrides --horizontal-flip auto
    skipped: tuple[SkippedFile, ...] = ()
    warnings: tuple[str, ...] = ()
    input_kind: InputKind = "png"
    problem: ExamProblem | None = None

    @property
    def missing_views(self) -> list[View]:
        return [v for v in VIEWS if not self.images.get(v)]


@dataclass(frozen=True)
class ViewImage:
    """Decoded pixels of one image: uint16, stored orientation, 12-bit data rescaled to 16 bit."""

    pixels: np.ndarray
    source: ImageSource
    warnings: tuple[str, ...] = field(default=())
