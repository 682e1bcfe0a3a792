"""16-bit greyscale PNG reading (the authors' input format)."""

from __future__ import annotations

import warnings as _warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from .exam import ImageSource, ViewImage

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def read_png(source: ImageSource) -> ViewImage:
    """Read raw 16-bit samples; 8-bit greyscale is scaled to 16 bit with a warning."""
    where = source.relative
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source.path) as im:
                im.load()
                mode = im.mode
                if mode in _SIXTEEN_BIT_MODES:
                    pixels = np.asarray(im, dtype=np.uint16).copy()
                elif mode in {"I", "I;32"}:
                    raw = np.asarray(im)
                    if raw.min(initial=0) < 0 or raw.max(initial=0) > 65535:
                        raise InputError(f"{where}: pixel values outside 0..65535")
                    pixels = raw.astype(np.uint16)
                elif mode == "L":
                    pixels = np.asarray(im, dtype=np.uint16) * np.uint16(257)
                    return ViewImage(
                        pixels=pixels,
                        source=source,
                        warnings=(
                            f"{where}: 8-bit image scaled to 16 bit; the model was trained on "
                            "12-bit data, expect less reliable results",
                        ),
                    )
                else:
                    raise InputError(
                        f"{where}: {mode} image; mammograms must be single-channel greyscale",
                        hint="export the mammogram as a 16-bit greyscale PNG or use the DICOM file",
                    )
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        raise InputError(
            f"{where}: cannot read the image ({type(exc).__name__}: "
            f"{str(exc).replace(str(source.path), where)})",
            hint="check that the file is a complete, uncorrupted PNG",
        ) from exc
    if pixels.ndim != 2:
        raise InputError(f"{where}: expected a 2-D greyscale image, got shape {pixels.shape}")
    return ViewImage(pixels=pixels, source=source)
