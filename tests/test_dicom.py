"""DICOM pixel reading: the pixel convention, every transfer syntax, and bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import make_mg, save_mg, synthetic_breast
from PIL import Image
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from mammocli.errors import InputError
from mammocli.io.dicom.options import DicomOptions, VoiMode
from mammocli.io.dicom.read import read_dicom
from mammocli.io.exam import ImageSource
from mammocli.io.load import read_view_image
from mammocli.views import Side, View


def source(path: Path, view: View = View.L_CC, kind: str = "dicom") -> ImageSource:
    return ImageSource(path=path, relative=path.name, view=view, kind=kind)


def sixteen(display: np.ndarray, bits: int) -> np.ndarray:
    """The authors' rescale, written independently: round(v * 65535 / (2**bits - 1))."""
    return np.rint(display.astype(np.float64) * 65535 / (2**bits - 1)).astype(np.uint16)


def test_12bit_monochrome2_equals_the_equivalent_16bit_png(tmp_path: Path) -> None:
    ds, display = make_mg("L", "CC", bits=12)
    dcm = save_mg(ds, tmp_path / "L_CC.dcm")
    png = tmp_path / "L_CC.png"
    Image.fromarray(sixteen(display, 12)).save(png)  # 12 -> 16 bit as the authors' PNGs
    from_dicom = read_view_image(source(dcm))
    from_png = read_view_image(source(png, kind="png"))
    assert from_dicom.pixels.dtype == np.uint16
    np.testing.assert_array_equal(from_dicom.pixels, from_png.pixels)
    assert from_dicom.pixels.max() == 65535 and from_dicom.pixels.min() == 0
    assert from_dicom.warnings == ()


@pytest.mark.parametrize("bits", [10, 12, 14, 16])
@pytest.mark.parametrize("monochrome1", [False, True])
def test_bit_depths_and_monochrome1_inversion(tmp_path: Path, bits: int,
                                              monochrome1: bool) -> None:
    ds, display = make_mg("R", "MLO", bits=bits, monochrome1=monochrome1)
    path = save_mg(ds, tmp_path / "x.dcm")
    image = read_dicom(source(path, View.R_MLO))
    np.testing.assert_array_equal(image.pixels, sixteen(display, bits))
    # Background (stored at max for MONOCHROME1) comes out as exactly 0.
    assert image.pixels[0, 0] == 0


def test_padding_value_and_range_become_zero(tmp_path: Path) -> None:
    ds, display = make_mg("L", "CC", monochrome1=True, padding_value=4095, padding_rows=5)
    image = read_dicom(source(save_mg(ds, tmp_path / "pad.dcm")))
    assert (image.pixels[:5] == 0).all()
    np.testing.assert_array_equal(image.pixels, sixteen(display, 12))

    # MONOCHROME2 with a padding range [4000, 4095]: bright padding that inversion would not fix.
    pixels = synthetic_breast(bits=12)
    pixels[:3] = 4050
    ds, _ = make_mg("L", "CC", pixels=pixels)
    ds.PixelPaddingValue, ds.PixelPaddingRangeLimit = 4000, 4095
    image = read_dicom(source(save_mg(ds, tmp_path / "range.dcm")))
    assert (image.pixels[:3] == 0).all()
    assert image.pixels[3:].max() > 0


LOSSLESS = [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless,
            JPEG2000Lossless, JPEGLSLossless, JPEGLossless, JPEGLosslessSV1]


@pytest.mark.parametrize("syntax", LOSSLESS, ids=lambda s: s.name)
@pytest.mark.parametrize("monochrome1", [False, True])
def test_lossless_transfer_syntaxes_decode_exactly(tmp_path: Path, syntax: str,
                                                   monochrome1: bool) -> None:
    ds, display = make_mg("L", "CC", bits=12, monochrome1=monochrome1)
    path = save_mg(ds, tmp_path / "c.dcm", syntax)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    image = read_dicom(source(path))
    np.testing.assert_array_equal(image.pixels, sixteen(display, 12))
    assert image.source.facing is Side.RIGHT


def test_lossy_jpeg2000_is_close_and_warns(tmp_path: Path) -> None:
    ds, display = make_mg("L", "CC", bits=12)
    image = read_dicom(source(save_mg(ds, tmp_path / "lossy.dcm", JPEG2000)))
    diff = np.abs(image.pixels.astype(np.int64) - sixteen(display, 12).astype(np.int64))
    assert diff.mean() < 0.01 * 65535
    assert any("lossy" in w for w in image.warnings)


def test_voi_window_mode_sigmoid_keeps_background_zero(tmp_path: Path) -> None:
    ds, display = make_mg("L", "CC", monochrome1=True, window=(2048, 2000, "SIGMOID"))
    path = save_mg(ds, tmp_path / "sig.dcm")
    raw = read_dicom(source(path))
    windowed = read_dicom(source(path), DicomOptions(voi=VoiMode.WINDOW))
    background = display == 0
    assert (windowed.pixels[background] == 0).all()
    assert not np.array_equal(raw.pixels, windowed.pixels)
    # Dense tissue stays bright after the inversion that follows the window.
    assert windowed.pixels[~background].mean() > 0


def test_facing_from_patient_orientation(tmp_path: Path) -> None:
    ds, _ = make_mg("R", "CC")
    assert read_dicom(source(save_mg(ds, tmp_path / "r.dcm"))).source.facing is Side.LEFT
    ds, _ = make_mg("R", "CC", orientation=False)
    assert read_dicom(source(save_mg(ds, tmp_path / "n.dcm"))).source.facing is None


# ---- bad inputs: each gives an InputError naming the file -------------------------------------


def expect_error(path: Path, *words: str, options: DicomOptions | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        read_dicom(source(path), options)
    text = str(info.value)
    assert text.startswith(path.name + ":")
    for word in words:
        assert word in text
    # No PHI from the synthetic header ends up in messages.
    assert "SYN0001" not in text and "SYNTHETIC" not in text and "20240101" not in text
    return info.value


def test_non_dicom_named_dcm(tmp_path: Path) -> None:
    path = tmp_path / "fake.dcm"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(path, format="PNG")
    expect_error(path, "not a DICOM file")


def test_truncated_header(tmp_path: Path) -> None:
    ds, _ = make_mg()
    path = save_mg(ds, tmp_path / "full.dcm")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:400])
    expect_error(cut, "truncated")


def test_truncated_pixel_data(tmp_path: Path) -> None:
    ds, _ = make_mg()
    data = save_mg(ds, tmp_path / "full.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 5000])
    expect_error(cut, "truncated")


def test_truncated_compressed_pixel_data(tmp_path: Path) -> None:
    ds, _ = make_mg()
    data = save_mg(ds, tmp_path / "full.dcm", JPEG2000Lossless).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 3000])
    expect_error(cut, "truncated")


def test_missing_pixel_data(tmp_path: Path) -> None:
    ds, _ = make_mg()
    del ds.PixelData
    expect_error(save_mg(ds, tmp_path / "nopix.dcm"), "no PixelData")


def test_bits_allocated_inconsistent_with_data(tmp_path: Path) -> None:
    ds, _ = make_mg()
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7  # data are 16-bit
    expect_error(save_mg(ds, tmp_path / "ba8.dcm"), "BitsAllocated")


def test_bits_allocated_inconsistent_compressed(tmp_path: Path) -> None:
    ds, _ = make_mg()
    path = save_mg(ds, tmp_path / "rle.dcm", RLELossless)
    ds = pydicom.dcmread(path)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.save_as(path)
    expect_error(path)


def test_huge_declared_size_is_refused_before_decoding(tmp_path: Path) -> None:
    ds, _ = make_mg()
    path = save_mg(ds, tmp_path / "ok.dcm", RLELossless)
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 40000, 40000
    ds.save_as(path)
    expect_error(path, "40000 x 40000", "Mpixel")
    # A lower cap applies to ordinary images too.
    small, _ = make_mg()
    expect_error(save_mg(small, tmp_path / "s.dcm"), "Mpixel",
                 options=DicomOptions(max_pixels=1000))


def test_transfer_syntax_without_any_decoder(tmp_path: Path) -> None:
    ds, _ = make_mg()
    path = save_mg(ds, tmp_path / "mpeg.dcm", RLELossless)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder exists
    ds.save_as(path)
    expect_error(path, "cannot be decoded")


def test_missing_decoder_names_the_package(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels import get_decoder

    ds, _ = make_mg()
    path = save_mg(ds, tmp_path / "jll.dcm", JPEGLosslessSV1)
    decoder = get_decoder(JPEGLosslessSV1)
    monkeypatch.setattr(decoder, "_available", {})  # as if python-gdcm were not installed
    error = expect_error(path, "no decoder installed")
    assert error.hint == "pip install python-gdcm"


def test_multiframe_is_refused(tmp_path: Path) -> None:
    frames = np.stack([synthetic_breast(seed=i) for i in range(2)])
    ds, _ = make_mg()
    ds.set_pixel_data(frames, "MONOCHROME2", 12)
    ds.NumberOfFrames = 2
    expect_error(save_mg(ds, tmp_path / "mf.dcm"), "multi-frame")
    # A header that hides the second frame is caught after decoding by the shape check.
    del ds.NumberOfFrames
    expect_error(save_mg(ds, tmp_path / "mf1.dcm"), "BitsAllocated or the size")


def test_rescale_slope_is_ignored_with_a_warning(tmp_path: Path) -> None:
    ds, display = make_mg("L", "CC")
    ds.RescaleSlope = 2
    image = read_dicom(source(save_mg(ds, tmp_path / "slope.dcm")))
    np.testing.assert_array_equal(image.pixels, sixteen(display, 12))
    assert any("rescale" in w for w in image.warnings)


def test_pydicom_warnings_become_result_warnings_without_header_values(tmp_path: Path) -> None:
    # NumberOfFrames 0: pydicom warns "A value of '0' for (0028,0008) ... is invalid" and
    # decodes one frame. The warning reaches the image's warnings, naming the file and the
    # element, never quoting the value.
    ds, display = make_mg(bits=12)
    ds.NumberOfFrames = 0
    image = read_dicom(source(save_mg(ds, tmp_path / "L_CC.dcm")))
    assert (image.pixels == sixteen(display, 12)).all()
    assert image.warnings == ("L_CC.dcm: pydicom warned while reading the file "
                              "(UserWarning about NumberOfFrames)",)


def test_pydicom_warning_text_is_never_echoed() -> None:
    import warnings

    from mammocli.io.dicom.scan import pydicom_warnings, warning_notes

    pydicom_file = str(Path(pydicom.__file__).parent / "valuerep.py")
    with pydicom_warnings() as caught:
        for text, category, filename in [
                ("The (0010,0010) value 'DOE^JANE' and PatientID 'MRN123' look odd",
                 UserWarning, pydicom_file),
                ("Photometric Interpretation 'SMITH' is odd", UserWarning, pydicom_file),
                ("old API", DeprecationWarning, pydicom_file),
                ("not pydicom's: 'JONES'", UserWarning, __file__)]:
            warnings.warn_explicit(text, category, filename, 1)
    notes = warning_notes(caught)
    assert notes == ["pydicom warned while reading the file (UserWarning about "
                     "PatientID, PatientName)",
                     "pydicom warned while reading the file (UserWarning)"]
    assert not any(v in n for n in notes for v in ("DOE", "JANE", "MRN123", "SMITH", "JONES"))


def test_reading_a_file_with_an_invalid_uid_prints_no_header_value(tmp_path: Path) -> None:
    # pydicom warns "Invalid value for VR UI: '<the UID>'" when the value is first read; that
    # warning must not reach stderr (nor the result) with the UID in it.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns when the test sets the value, too
        ds, _ = make_mg(bits=12)
        ds.SeriesInstanceUID = "1.2.3.SECRET_VALUE"
        path = save_mg(ds, tmp_path / "L_CC.dcm")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        image = read_dicom(source(path))
        from mammocli.io.dicom.scan import scan_header

        header, _ = scan_header(path, "L_CC.dcm", 10**8)  # captures the UIDs too
    assert header.uids is not None and header.uids.series == "1.2.3.SECRET_VALUE"
    assert [str(w.message) for w in shown] == []
    assert image.warnings == ("L_CC.dcm: pydicom warned while reading the file (UserWarning "
                              "about a value of VR UI)",)
