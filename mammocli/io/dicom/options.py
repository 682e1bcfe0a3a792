"""Options for DICOM discovery and decoding (the `predict` flags map onto these one to one)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# 100 Mpixel: FFDM detectors are at most about 6000 x 5000 (30 Mpixel); anything larger is a
# corrupt or hostile header and would make a decoder allocate gigabytes.
DEFAULT_MAX_PIXELS = 100_000_000


class GroupBy(str, Enum):
    """How DICOM files become exams.

    AUTO: one exam per StudyInstanceUID; where studies are incomplete and one folder holds exactly
    one four-view set of one patient (digitised-film archives give every image its own study),
    that folder is the exam, with a warning. STUDY: one exam per StudyInstanceUID. FOLDER: one
    exam per folder directly under the root. PATIENT: one exam per PatientID (hashed for the id).
    """

    AUTO = "auto"
    STUDY = "study"
    FOLDER = "folder"
    PATIENT = "patient"


class VoiMode(str, Enum):
    """How stored values become intensities.

    NONE: the stored values, rescaled from BitsStored to 16 bit (the authors' convention).
    WINDOW: pydicom's VOI LUT (VOILUTSequence or WindowCenter/Width incl. SIGMOID) first.
    """

    NONE = "none"
    WINDOW = "window"


@dataclass(frozen=True)
class DicomOptions:
    voi: VoiMode = VoiMode.NONE
    voi_index: int = 0  # which window when WindowCenter/Width carry several
    allow_synthetic: bool = False  # synthesized 2D (C-View, V-Preview, S-View ...)
    allow_for_processing: bool = False  # raw detector images
    allow_secondary_capture: bool = False  # e.g. digitised film (CBIS-DDSM) stored as SC
    one_per_view: bool = False  # keep only the latest acquisition per view
    include_uids: bool = False  # opt-in: exam ids may be StudyInstanceUIDs
    group_by: GroupBy = GroupBy.AUTO
    max_pixels: int = DEFAULT_MAX_PIXELS
