"""Read any supported image file into a ViewImage (dispatch on the source kind)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exam import ImageSource, ViewImage
from .png import read_png

if TYPE_CHECKING:
    from .dicom.options import DicomOptions


def read_view_image(source: ImageSource, *, dicom: DicomOptions | None = None) -> ViewImage:
    """`dicom`: pixel options (VOI mode, ...) for DICOM sources; its `max_pixels` is the one
    size limit for PNG and DICOM alike."""
    if source.kind == "png":
        return read_png(source, max_pixels=dicom.max_pixels) if dicom else read_png(source)
    from .dicom.read import read_dicom  # imported lazily: pydicom and its decoders are heavy

    return read_dicom(source, dicom)
