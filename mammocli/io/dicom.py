"""DICOM pixel reading: stored values -> the authors' 16-bit convention.

The NYU model was trained on 12-bit presentation values written to 16-bit PNGs as
`round(v * 65535 / 4095)`. We do the same for any BitsStored (scale to the full range of
BitsStored), invert MONOCHROME1 so that dense tissue is bright, and set padding to exactly 0
(the crop looks for a zero background). No windowing unless asked for (`VoiMode.WINDOW`).
"""

from __future__ import annotations

import dataclasses
import warnings
from io import BytesIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi_lut, get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from ..errors import InputError
from .dicom_options import DicomOptions, VoiMode
from .dicom_scan import header_problem, read_header
from .dicom_tags import facing_from_orientation
from .exam import ImageSource, ViewImage

# The package that provides a decoder for each compressed transfer syntax (no GPL decoders).
_DECODER_PACKAGES: dict[str, str] = {
    JPEGLossless: "python-gdcm",
    JPEGLosslessSV1: "python-gdcm",
    JPEGLSLossless: "python-gdcm",
    JPEGLSNearLossless: "python-gdcm",
    JPEG2000Lossless: "pylibjpeg pylibjpeg-openjpeg",
    JPEG2000: "pylibjpeg pylibjpeg-openjpeg",
    JPEGBaseline8Bit: "pillow",
    JPEGExtended12Bit: "python-gdcm",
}
_LOSSY = {JPEG2000, JPEGLSNearLossless, JPEGBaseline8Bit, JPEGExtended12Bit}


def read_dicom(source: ImageSource, options: DicomOptions | None = None) -> ViewImage:
    """Decode one DICOM image into uint16 pixels in stored orientation (see module docstring).

    Raises InputError naming the file (relative to the exam folder) for anything unusable.
    """
    options = options or DicomOptions()
    where = source.relative
    header, element = read_header(source.path, where)
    problem = header_problem(header, element, options.max_pixels)
    if problem:
        raise InputError(f"{where}: {problem}", hint="export the image again from the archive")
    syntax = UID(str(header.file_meta.get("TransferSyntaxUID", "")))
    _check_decoder(syntax, where)
    stored = _decode(source, syntax)
    rows, cols = int(header.Rows), int(header.Columns)
    if stored.shape != (rows, cols) or stored.dtype.kind not in "ui":
        raise InputError(
            f"{where}: decoded pixels have shape {stored.shape} and dtype {stored.dtype}, the "
            f"header declares {rows} x {cols} single-frame greyscale; BitsAllocated or the size "
            "is inconsistent with the data",
            hint="export the image again from the archive",
        )
    pixels, notes = to_sixteen_bit(stored, header, options)
    if syntax in _LOSSY:
        notes.append(f"lossy compression ({syntax.name}); results may differ from the original")
    facing = source.facing or facing_from_orientation(header)
    if facing is not source.facing:
        source = dataclasses.replace(source, facing=facing)
    return ViewImage(pixels=pixels, source=source,
                     warnings=tuple(f"{where}: {n}" for n in notes))


def _check_decoder(syntax: UID, where: str) -> None:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise InputError(
            f"{where}: transfer syntax '{syntax.name}' cannot be decoded (no decoder exists "
            "for it)",
            hint="export the images uncompressed, or as JPEG 2000, JPEG Lossless or RLE",
        ) from exc
    if not decoder.is_available:
        package = _DECODER_PACKAGES.get(syntax, "python-gdcm")
        raise InputError(
            f"{where}: no decoder installed for transfer syntax '{syntax.name}'",
            hint=f"pip install {package}",
        )


def _decode(source: ImageSource, syntax: UID) -> np.ndarray:
    where = source.relative
    try:
        with warnings.catch_warnings():
            # e.g. "J2K precision differs from BitsStored": the shape/range checks decide.
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(BytesIO(source.path.read_bytes()))
            if "PixelData" not in ds:
                # The header scan saw the element: an encapsulated stream that ends early.
                raise InputError(
                    f"{where}: pixel data truncated (the compressed image ends early)",
                    hint="export the image again from the archive")
            return np.asarray(ds.pixel_array)
    except InputError:
        raise
    except (ValueError, RuntimeError, AttributeError, KeyError, TypeError, OSError, EOFError,
            NotImplementedError, MemoryError) as exc:
        detail = " ".join(str(exc).replace(str(source.path), where).split())[:300]
        raise InputError(
            f"{where}: cannot decode the pixel data ({syntax.name}): {detail}",
            hint="the file may be truncated or corrupt; export the image again from the archive",
        ) from exc


def to_sixteen_bit(stored: np.ndarray, ds: Dataset,
                   options: DicomOptions) -> tuple[np.ndarray, list[str]]:
    """Stored values -> uint16 (the pixel convention). Returns (pixels, warnings)."""
    notes: list[str] = []
    bits = int(ds.BitsStored)
    values = stored.astype(np.int64)
    observed = int(values.max(initial=0))
    if observed > 2**bits - 1:
        # A lying header (seen with some compressed files): use the depth the data need.
        bits = max(observed.bit_length(), bits)
        notes.append(f"pixel values exceed BitsStored {int(ds.BitsStored)}; treated as {bits}-bit")
    maxv = 2**bits - 1
    slope, intercept = ds.get("RescaleSlope", 1), ds.get("RescaleIntercept", 0)
    if "ModalityLUTSequence" in ds or float(slope or 1) != 1 or float(intercept or 0) != 0:
        # Non-conformant for MG; the authors used stored values, so we do too.
        notes.append("modality LUT / rescale slope or intercept ignored (stored values used)")
    padding = _padding_mask(values, ds)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    inverse = photometric == "MONOCHROME1"
    lut_shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    if photometric == "MONOCHROME2" and lut_shape == "INVERSE":
        inverse = True  # non-conformant but seen in the wild: display is inverted
        notes.append("MONOCHROME2 with an INVERSE presentation LUT; inverted")
    if options.voi is VoiMode.NONE:
        bright = maxv - values if inverse else values
    else:
        dark = (maxv - values if inverse else values) == 0
        bright = _apply_voi(stored, ds, options, maxv, inverse, notes)
        # SIGMOID never reaches 0; the crop needs the background at exactly 0.
        bright[dark] = 0
    bright[padding] = 0
    # round(v * 65535 / maxv); maxv is odd so there are no halves: integer arithmetic is exact.
    scaled = (2 * bright * 65535 + maxv) // (2 * maxv)
    pixels = np.clip(scaled, 0, 65535).astype(np.uint16)
    if not (pixels == 0).any():
        notes.append("no background pixel is 0; cropping may fail (padding value not set?)")
    return pixels, notes


def _padding_mask(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Pixels equal to PixelPaddingValue or inside [value, PixelPaddingRangeLimit]."""
    value = ds.get("PixelPaddingValue")
    if value is None or value == "":
        return np.zeros(values.shape, dtype=bool)
    low = int(value)
    limit = ds.get("PixelPaddingRangeLimit")
    high = low if limit is None or limit == "" else int(limit)
    low, high = min(low, high), max(low, high)
    return (values >= low) & (values <= high)


def _apply_voi(stored: np.ndarray, ds: Dataset, options: DicomOptions, maxv: int,
               inverse: bool, notes: list[str]) -> np.ndarray:
    has_voi = "VOILUTSequence" in ds or "WindowCenter" in ds
    if not has_voi:
        notes.append("no VOI LUT or window in the header; stored values used")
        windowed = stored.astype(np.float64)
        top = float(maxv)
    else:
        windowed = np.asarray(apply_voi_lut(stored, ds, index=options.voi_index,
                                            prefer_lut=True), dtype=np.float64)
        top = float(maxv)
        if "VOILUTSequence" in ds and "WindowCenter" not in ds:
            # A LUT's output range is set by its own bits, not BitsStored.
            lut_bits = int(ds.VOILUTSequence[options.voi_index].LUTDescriptor[2])
            top = float(2**lut_bits - 1)
    windowed = np.clip(windowed, 0.0, top)
    if inverse:
        windowed = top - windowed
    # Back onto the stored range so that the common 16-bit rescale applies.
    return np.rint(windowed * (maxv / top)).astype(np.int64)
