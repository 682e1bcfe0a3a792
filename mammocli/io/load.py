"""Read any supported image file into a ViewImage (dispatch on the source kind)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exam import ImageSource, ViewImage
from .png import read_png

if TYPE_CHECKING:
    from .dicom_options import DicomOptions


def read_view_image(source: ImageSource, *, dicom: DicomOptions | None = None) -> ViewImage:
    """`dicom`: pixel options (VOI mode, size cap) for DICOM sources; ignored for PNG."""
    if source.kind == "png":
        return read_png(source)
    from .dicom import read_dicom  # imported lazily: pydicom and its decoders are heavy

    return read_dicom(source, dicom)
