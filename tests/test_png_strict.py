"""Strict PNG decoding: a cut, padded or lying file fails with its name, never decodes into
rows of zeros; a huge declared size is refused before decoding."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFile

from mammocli.errors import InputError
from mammocli.io.dicom.options import DicomOptions
from mammocli.io.exam import ImageSource
from mammocli.io.load import read_view_image
from mammocli.io.png import read_png
from mammocli.synthetic.phantoms import write_png16
from mammocli.views import View

ROWS, COLS = 40, 30
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _ihdr(width: int = COLS, height: int = ROWS, compression: int = 0) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, compression, 0, 0))


def _scanlines(rows: int = ROWS, cols: int = COLS) -> bytes:
    pixels = (np.arange(rows * cols).reshape(rows, cols) * 37 + 1000).astype(">u2")
    return b"".join(b"\x00" + row.tobytes() for row in pixels)


def _png(*chunks: bytes) -> bytes:
    return PNG_SIGNATURE + b"".join(chunks)


def _good() -> bytes:
    return _png(_ihdr(), _chunk(b"IDAT", zlib.compress(_scanlines())), _chunk(b"IEND", b""))


def _source(path: Path) -> ImageSource:
    return ImageSource(path=path, relative=path.name, view=View.L_CC)


def _read(tmp_path: Path, data: bytes, name: str = "L_CC.png"):
    (tmp_path / name).write_bytes(data)
    return read_png(_source(tmp_path / name))


def test_hand_built_png_reads_back(tmp_path: Path) -> None:
    image = _read(tmp_path, _good())
    assert image.pixels.shape == (ROWS, COLS)
    assert image.pixels[0, 1] == 1037 and image.pixels.dtype == np.uint16


def _half_rows_then_zlib_end() -> bytes:
    return _png(_ihdr(), _chunk(b"IDAT", zlib.compress(_scanlines()[: len(_scanlines()) // 2])),
                _chunk(b"IEND", b""))


def _more_rows_declared() -> bytes:
    return _png(_ihdr(height=ROWS * 2), _chunk(b"IDAT", zlib.compress(_scanlines())),
                _chunk(b"IEND", b""))


def _garbage_after_stream() -> bytes:
    return _png(_ihdr(), _chunk(b"IDAT", zlib.compress(_scanlines()) + b"\x17" * 64),
                _chunk(b"IEND", b""))


def _bad_compression_method() -> bytes:
    return _png(_ihdr(compression=1), _chunk(b"IDAT", zlib.compress(_scanlines())),
                _chunk(b"IEND", b""))


def _bad_crc() -> bytes:
    idat = zlib.compress(_scanlines())
    return _png(_ihdr(), _chunk(b"IDAT", idat, crc=zlib.crc32(b"IDAT" + idat) ^ 1),
                _chunk(b"IEND", b""))


def _corrupt_deflate() -> bytes:
    idat = bytearray(zlib.compress(_scanlines()))
    idat[len(idat) // 2] ^= 0xFF
    return _png(_ihdr(), _chunk(b"IDAT", bytes(idat)), _chunk(b"IEND", b""))


@pytest.mark.parametrize("make,reason", [
    (lambda: _good()[:-3], "truncated"),  # cut inside IEND
    (lambda: _good()[:-12], "no IEND"),  # IEND missing
    (lambda: _good()[:-30], "cut inside the IDAT chunk"),  # cut inside the last IDAT
    (_half_rows_then_zlib_end, "ends early: about 20 of the 40 rows"),
    (_more_rows_declared, "ends early: about 40 of the 80 rows"),
    (_garbage_after_stream, "continues after the end of its zlib stream"),
    (_bad_compression_method, "compression method 1 is not valid"),
    (_bad_crc, "IDAT chunk CRC mismatch"),
    (_corrupt_deflate, "corrupt"),
    (lambda: b"\xff\xd8\xff\xe0JFIF" + b"\0" * 100, "not a PNG file"),
])
def test_broken_pngs_fail_with_the_file_name(tmp_path: Path, make, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as info:
        _read(tmp_path, make())
    assert info.value.message.startswith("L_CC.png: cannot read the image")
    assert info.value.exit_code == 3
    assert str(tmp_path) not in str(info.value)


def test_pillow_truncation_leniency_cannot_let_a_cut_file_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow's global switch (set by some other library in the process) changes nothing.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    write_png16(tmp_path / "full.png", np.full((64, 64), 1000, dtype=np.uint16))
    data = (tmp_path / "full.png").read_bytes()
    with pytest.raises(InputError, match="cut.png: cannot read the image"):
        _read(tmp_path, data[: len(data) - 20], "cut.png")
    with pytest.raises(InputError, match="ends early"):
        _read(tmp_path, _half_rows_then_zlib_end(), "half.png")


def test_huge_declared_size_is_refused_before_decoding(tmp_path: Path) -> None:
    # 9400 x 9400 of zeros compresses to ~170 kB; declared 88 Mpixel, limit set to 50 Mpixel.
    rows = b"\x00" * (1 + 9400 * 2)
    big = _png(_ihdr(9400, 9400), _chunk(b"IDAT", zlib.compress(rows * 9400, 9)),
               _chunk(b"IEND", b""))
    (tmp_path / "R_MLO.png").write_bytes(big)
    source = _source(tmp_path / "R_MLO.png")
    with pytest.raises(InputError, match="9400 x 9400 pixels, above the limit of 50,000,000") \
            as info:
        read_view_image(source, dicom=DicomOptions(max_pixels=50_000_000))
    assert "--max-pixels" in (info.value.hint or "")
    # The default limit (100 Mpixel) applies without options; 100000 x 100000 is far above it.
    (tmp_path / "x.png").write_bytes(_png(_ihdr(100_000, 100_000), _chunk(b"IEND", b"")))
    with pytest.raises(InputError, match="above the limit of 100,000,000"):
        read_png(_source(tmp_path / "x.png"))


def test_max_pixels_raised_admits_a_large_image(tmp_path: Path) -> None:
    (tmp_path / "L_CC.png").write_bytes(_good())
    source = _source(tmp_path / "L_CC.png")
    with pytest.raises(InputError, match="above the limit of 1,000"):
        read_view_image(source, dicom=DicomOptions(max_pixels=1_000))
    assert read_view_image(source, dicom=DicomOptions(max_pixels=ROWS * COLS)).pixels.shape \
        == (ROWS, COLS)


def test_interlaced_png_reads(tmp_path: Path) -> None:
    from PIL import Image

    pixels = (np.arange(37 * 23, dtype=np.uint16).reshape(37, 23) * 61)
    Image.fromarray(pixels).save(tmp_path / "i.png", interlace=1)
    np.testing.assert_array_equal(read_png(_source(tmp_path / "i.png")).pixels, pixels)
    Image.fromarray(np.arange(35, dtype=np.uint8).reshape(5, 7)).save(tmp_path / "e.png",
                                                                       interlace=1)
    assert read_png(_source(tmp_path / "e.png")).pixels.shape == (5, 7)
