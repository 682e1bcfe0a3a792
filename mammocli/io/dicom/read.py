"""DICOM pixel reading: stored values -> the authors' 16-bit convention.

The NYU model was trained on 12-bit presentation values written to 16-bit PNGs as
`round(v * 65535 / 4095)`. We do the same for any BitsStored (scale to the full range of
BitsStored), invert MONOCHROME1 so that dense tissue is bright, and set padding to exactly 0
(the crop looks for a zero background). No windowing unless asked for (`VoiMode.WINDOW`).
"""

from __future__ import annotations

import dataclasses
from io import BytesIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_voi_lut
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
    RLELossless,
)

from ...errors import InputError
from ..exam import ImageSource, ViewImage
from .options import DicomOptions, VoiMode
from .scan import check_elements, header_problem, pydicom_warnings, read_header, warning_notes
from .tags import facing_from_orientation

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
_J2K = {JPEG2000, JPEG2000Lossless}
_JPEG = {JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, JPEGBaseline8Bit,
         JPEGExtended12Bit}
_REEXPORT = "export the image again from the archive"


def read_dicom(source: ImageSource, options: DicomOptions | None = None) -> ViewImage:
    """Decode one DICOM image into uint16 pixels in stored orientation (see module docstring).

    Decoding is strict: the compressed stream's own size and depth, and the decoded array, must
    match Rows, Columns, BitsAllocated and one greyscale sample. Raises InputError naming the
    file (relative to the exam folder) for anything unusable; never with a header value.
    """
    options = options or DicomOptions()
    with pydicom_warnings() as caught:
        image = _read(source, options)
    notes = warning_notes(caught)
    if not notes:
        return image
    return dataclasses.replace(image, warnings=(*image.warnings,
                                                *(f"{source.relative}: {n}" for n in notes)))


def _read(source: ImageSource, options: DicomOptions) -> ViewImage:
    where = source.relative
    header, element = read_header(source.path, where)
    check_elements(header, where)
    problem = header_problem(header, element, options.max_pixels)
    if problem:
        raise InputError(f"{where}: {problem}", hint=_REEXPORT)
    syntax = UID(str(header.file_meta.get("TransferSyntaxUID", "")))
    _check_decoder(syntax, where)
    stored = _decode(source, syntax)
    rows, cols = int(header.Rows), int(header.Columns)
    allocated = int(header.BitsAllocated)
    if (stored.shape != (rows, cols) or stored.dtype.kind not in "ui"
            or stored.dtype.itemsize * 8 != allocated):
        raise InputError(
            f"{where}: decoded pixels have shape {stored.shape} and dtype {stored.dtype}, the "
            f"header declares {rows} x {cols} single-frame greyscale at BitsAllocated "
            f"{allocated}; BitsAllocated or the size is inconsistent with the data",
            hint=_REEXPORT,
        )
    try:
        pixels, notes = to_sixteen_bit(stored, header, options)
    except InputError:
        raise
    except Exception as exc:  # a header value that pydicom parsed but cannot be applied
        raise InputError(
            f"{where}: cannot apply the header's pixel description ({type(exc).__name__}: "
            "Rescale, Window, VOI LUT or padding values are invalid)",
            hint=_REEXPORT,
        ) from exc
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


def _is_fatal(exc: BaseException) -> bool:
    """Exceptions that must end the run: not a file's fault. pyo3 decoders (pylibjpeg-rle)
    raise PanicException, a BaseException, on corrupt data: that one is the file's fault."""
    return not isinstance(exc, Exception) and type(exc).__name__ != "PanicException"


def _decode(source: ImageSource, syntax: UID) -> np.ndarray:
    # pydicom's warnings here (e.g. "J2K precision differs from BitsStored") are recorded by
    # read_dicom: the shape/range checks decide, and the result's warnings say what it saw.
    where = source.relative
    try:
        ds = pydicom.dcmread(BytesIO(source.path.read_bytes()))
        if "PixelData" not in ds:
            # The header scan saw the element: an encapsulated stream that ends early.
            raise InputError(
                f"{where}: pixel data truncated (the compressed image ends early)",
                hint=_REEXPORT)
        if syntax.is_valid and syntax.is_compressed:
            _check_codestream(ds, syntax, where)
        return np.asarray(ds.pixel_array)
    except InputError:
        raise
    except BaseException as exc:
        if _is_fatal(exc):
            raise
        # pydicom's own text may quote header values: say what failed in our words.
        raise InputError(
            f"{where}: cannot decode the pixel data ({syntax.name}, {type(exc).__name__}): "
            "the data do not decode to the Rows x Columns x BitsAllocated the header declares",
            hint="the file may be truncated or corrupt; " + _REEXPORT,
        ) from exc


def _check_codestream(ds: Dataset, syntax: UID, where: str) -> None:
    """Before decoding: the compressed stream's own size, depth and components must match the
    header (a decoder would otherwise decode a differently sized image, or allocate for one)."""
    from pydicom.encaps import generate_frames

    frame = next(generate_frames(ds.PixelData, number_of_frames=1), b"")
    rows, cols = int(ds.Rows), int(ds.Columns)
    allocated, samples = int(ds.BitsAllocated), int(ds.get("SamplesPerPixel") or 1)
    found: tuple[int, int, int, int] | None = None  # (rows, cols, precision, components)
    if syntax in _J2K:
        found = _j2k_size(frame)
    elif syntax in _JPEG:
        from pydicom.pixels.utils import _get_jpg_parameters

        info = _get_jpg_parameters(frame)
        if info:
            found = (int(info["height"]), int(info["width"]), int(info["precision"]),
                     int(info["components"]))
    elif syntax == RLELossless and len(frame) >= 64:
        segments = int.from_bytes(frame[:4], "little")
        if segments != samples * allocated // 8:
            raise InputError(
                f"{where}: RLE data hold {segments} segment(s), the header declares "
                f"{samples} sample(s) at BitsAllocated {allocated} = "
                f"{samples * allocated // 8}; BitsAllocated is inconsistent with the data",
                hint=_REEXPORT)
    if found is None:
        return
    f_rows, f_cols, precision, components = found
    if (f_rows, f_cols) != (rows, cols) or precision > allocated or components != samples:
        raise InputError(
            f"{where}: the compressed image is {f_rows} x {f_cols}, {precision}-bit, "
            f"{components} component(s); the header declares {rows} x {cols} at BitsAllocated "
            f"{allocated} with {samples} sample(s); the header is inconsistent with the data",
            hint=_REEXPORT)


def _j2k_size(frame: bytes) -> tuple[int, int, int, int] | None:
    """(rows, cols, precision, components) from a J2K codestream's SIZ marker, or None."""
    import struct

    if frame[:4] != b"\xff\x4f\xff\x51" or len(frame) < 45:
        return None  # not a bare codestream (e.g. a JP2 box): the decoded-shape check decides
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", frame[8:24])
    (components,) = struct.unpack(">H", frame[40:42])
    precision = (frame[42] & 0x7F) + 1
    return ysiz - yo, xsiz - xo, precision, components


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
