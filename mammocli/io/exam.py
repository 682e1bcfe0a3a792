"""Typed records of what discovery found: exams, their image files, and files left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import FlipMode
from ..views import VIEWS, Side, View


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


@dataclass(frozen=True)
class SkippedFile:
    relative: str
    reason: str


@dataclass(frozen=True)
class ExamSource:
    """An exam as found on disk; pixels are read later, one view at a time."""

    exam_id: str
    folder: Path
    images: dict[View, tuple[ImageSource, ...]]
    horizontal_flip: FlipMode | None = None  # from exam.yaml, overrides --horizontal-flip auto
    skipped: tuple[SkippedFile, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def missing_views(self) -> list[View]:
        return [v for v in VIEWS if not self.images.get(v)]


@dataclass(frozen=True)
class ViewImage:
    """Decoded pixels of one image: uint16, stored orientation, 12-bit data rescaled to 16 bit."""

    pixels: np.ndarray
    source: ImageSource
    warnings: tuple[str, ...] = field(default=())
