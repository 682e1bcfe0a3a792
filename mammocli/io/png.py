"""16-bit greyscale PNG reading (the authors' input format), strict.

Before Pillow decodes a file, its structure is checked here: signature, IHDR (size within the
pixel limit, valid methods), every chunk's CRC, IEND present, and the zlib stream of the IDAT
chunks complete and exactly as long as the header's rows need. A cut or padded file would
otherwise decode into rows of zeros or garbage that the model scores.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings as _warnings
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ..errors import InputError
from .dicom.options import DEFAULT_MAX_PIXELS
from .exam import ImageSource, ViewImage

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_DEPTHS = {0: {1, 2, 4, 8, 16}, 2: {8, 16}, 3: {1, 2, 4, 8}, 4: {8, 16}, 6: {8, 16}}
# Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))
MAX_PIXELS_HINT = "raise the limit with --max-pixels if the image is genuinely this large"


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int

    def raw_size(self) -> int:
        """Bytes of filtered scanlines (one filter byte per row) the zlib stream must hold."""
        bits = _CHANNELS[self.colour_type] * self.bit_depth
        passes = _ADAM7 if self.interlace else ((0, 0, 1, 1),)
        total = 0
        for x0, y0, dx, dy in passes:
            w = (self.width - x0 + dx - 1) // dx
            h = (self.height - y0 + dy - 1) // dy
            if w > 0 and h > 0:
                total += h * (1 + (w * bits + 7) // 8)
        return total


class _Broken(Exception):
    """A structural fault of the file (message without the file name)."""


def _check_structure(data: bytes, max_pixels: int) -> PngHeader:
    if not data.startswith(PNG_SIGNATURE):
        raise _Broken("not a PNG file (no PNG signature)")
    pos = len(PNG_SIGNATURE)
    header: PngHeader | None = None
    inflater = zlib.decompressobj()
    inflated = 0
    expected = 0
    idat_state = 0  # 0 before IDAT, 1 in the IDAT run, 2 after it
    while True:
        if pos + 8 > len(data):
            raise _Broken("the file is truncated (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        name = ctype.decode("latin-1")
        if end > len(data):
            raise _Broken(f"the file is truncated (cut inside the {name} chunk)")
        body = data[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length:end])[0]
        if zlib.crc32(ctype + body) != crc:
            raise _Broken(f"{name} chunk CRC mismatch: the file is corrupt")
        if header is None:
            if ctype != b"IHDR" or length != 13:
                raise _Broken("the first chunk is not a valid IHDR")
            width, height, depth, colour, comp, filt, inter = struct.unpack(">IIBBBBB", body)
            if width == 0 or height == 0:
                raise _Broken(f"IHDR declares {width} x {height} pixels")
            if width * height > max_pixels:
                raise _Broken(f"IHDR declares {width} x {height} pixels, above the limit of "
                              f"{max_pixels:,}")
            if colour not in _DEPTHS or depth not in _DEPTHS[colour]:
                raise _Broken(f"IHDR bit depth {depth} / colour type {colour} is not valid")
            if comp != 0:
                raise _Broken(f"IHDR compression method {comp} is not valid (PNG has only 0)")
            if filt != 0:
                raise _Broken(f"IHDR filter method {filt} is not valid (PNG has only 0)")
            if inter not in (0, 1):
                raise _Broken(f"IHDR interlace method {inter} is not valid")
            header = PngHeader(width, height, depth, colour, inter)
            expected = header.raw_size()
        elif ctype == b"IDAT":
            if idat_state == 2:
                raise _Broken("IDAT chunks are not consecutive")
            idat_state = 1
            pending = body
            try:
                while pending:
                    if inflater.eof:
                        raise _Broken("image data continues after the end of its zlib stream")
                    # Bounded output: a small chunk may inflate to gigabytes.
                    inflated += len(inflater.decompress(pending, 1 << 20))
                    pending = inflater.unconsumed_tail
                    if inflated > expected:
                        raise _Broken("the image data is longer than the IHDR size needs")
                if inflater.unused_data:
                    raise _Broken("image data continues after the end of its zlib stream")
            except zlib.error as exc:
                raise _Broken(f"the compressed image data is corrupt ({exc})") from None
        elif ctype == b"IEND":
            break
        elif idat_state == 1:
            idat_state = 2
        pos = end
    if idat_state == 0:
        raise _Broken("no image data (IDAT chunk)")
    assert header is not None
    if not inflater.eof or inflated != expected:
        rows = header.height * inflated // expected if expected else 0
        raise _Broken(f"the image data ends early: about {rows} of the {header.height} rows "
                      "declared in IHDR")
    return header


def _read_regular(source: ImageSource) -> bytes:
    where = source.relative
    try:
        # Never open a FIFO or device: reading one blocks forever.
        if not stat.S_ISREG(os.stat(source.path).st_mode):
            raise InputError(f"{where}: not a regular file", hint="list image files only")
        return source.path.read_bytes()
    except OSError as exc:
        raise InputError(f"{where}: cannot read the image ({exc.strerror})",
                         hint="check that the file exists and is readable") from exc


def read_png(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ViewImage:
    """Read raw 16-bit samples; 8-bit greyscale is scaled to 16 bit with a warning.

    Images above `max_pixels` (width x height) are refused before decoding.
    """
    where = source.relative
    data = _read_regular(source)
    try:
        header = _check_structure(data, max_pixels)
    except _Broken as exc:
        message = str(exc)
        hint = (MAX_PIXELS_HINT if "above the limit" in message
                else "check that the file is a complete, uncorrupted PNG")
        raise InputError(f"{where}: cannot read the image: {message}", hint=hint) from None
    try:
        with _warnings.catch_warnings():
            # The size was checked above against our own limit; Pillow's bomb check is not
            # used (PngImageFile, not Image.open, so --max-pixels is the one limit).
            _warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with PngImagePlugin.PngImageFile(io.BytesIO(data)) as im:
                im.load()
                if im.size != (header.width, header.height):
                    raise InputError(f"{where}: decoded size {im.size} differs from the "
                                     f"header's {header.width} x {header.height}")
                pixels, warnings = _pixels(im, where)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(
            f"{where}: cannot read the image ({type(exc).__name__}: "
            f"{str(exc).replace(str(source.path), where)})",
            hint="check that the file is a complete, uncorrupted PNG",
        ) from exc
    if pixels.shape != (header.height, header.width):
        raise InputError(f"{where}: decoded shape {pixels.shape} differs from the header's "
                         f"{header.height} x {header.width}")
    return ViewImage(pixels=pixels, source=source, warnings=warnings)


def _pixels(im: Image.Image, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES:
        return np.asarray(im, dtype=np.uint16).copy(), ()
    if mode in {"I", "I;32"}:
        raw = np.asarray(im)
        if raw.min(initial=0) < 0 or raw.max(initial=0) > 65535:
            raise InputError(f"{where}: pixel values outside 0..65535")
        return raw.astype(np.uint16), ()
    if mode == "L":
        return np.asarray(im, dtype=np.uint16) * np.uint16(257), (
            f"{where}: 8-bit image scaled to 16 bit; the model was trained on "
            "12-bit data, expect less reliable results",)
    raise InputError(
        f"{where}: {mode} image; mammograms must be single-channel greyscale",
        hint="export the mammogram as a 16-bit greyscale PNG or use the DICOM file",
    )
