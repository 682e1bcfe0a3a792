"""Read any supported image file into a ViewImage (dispatch on the source kind)."""

from __future__ import annotations

from .exam import ImageSource, ViewImage
from .png import read_png


def read_view_image(source: ImageSource) -> ViewImage:
    if source.kind == "png":
        return read_png(source)
    from .dicom import read_dicom  # imported lazily: pydicom and its decoders are heavy

    return read_dicom(source)
