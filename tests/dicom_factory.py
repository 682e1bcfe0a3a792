"""Synthetic mammography DICOM files for tests and examples (no patient data).

`make_mg(...)` builds a Digital Mammography X-Ray (For Presentation) dataset with laterality and
view tags and a breast-like image; `save_mg(ds, path, syntax)` writes it with any transfer syntax
the project decodes (uncompressed, deflated, RLE, JPEG 2000 lossless/lossy, JPEG-LS, JPEG
Lossless via python-gdcm); `write_exam` writes a four-view study. Sizes are small (300 x 200).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    JPEG2000,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGLossless,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BREAST_TOMO = "1.2.840.10008.5.1.4.1.1.13.1.3"

VIEW_CODES = {  # CID 4014: (SCT, legacy SRT)
    "CC": ("399162004", "R-10242", "cranio-caudal"),
    "MLO": ("399368009", "R-10226", "medio-lateral oblique"),
    "ML": ("399260004", "R-10224", "medio-lateral"),
    "XCCL": ("399192008", "R-1024A", "cranio-caudal exaggerated laterally"),
}
MODIFIER_CODES = {  # CID 4015
    "spot": ("399055006", "spot compression"),
    "mag": ("399163009", "magnification"),
    "implant": ("399209000", "implant displaced"),
    "rolled": ("399197002", "rolled lateral"),
}


def code_item(value: str, meaning: str, scheme: str = "SCT") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def synthetic_breast(rows: int = 300, cols: int = 200, laterality: str = "L", bits: int = 12,
                     seed: int = 0) -> np.ndarray:
    """Display-sense values (0 background, bright tissue) in [0, 2**bits - 1]. The breast is a
    half-disc against the chest wall: left edge for L (faces right), right edge for R."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    x0 = 0 if laterality == "L" else cols - 1
    r = np.hypot((yy - rows / 2) / (rows * 0.45), (xx - x0) / (cols * 0.8))
    breast = r < 1.0
    top = 2**bits - 1
    img = np.zeros((rows, cols), np.float64)
    img[breast] = top * (0.35 + 0.3 * (1 - r[breast])) + rng.normal(0, top * 0.015,
                                                                      int(breast.sum()))
    img[breast] = np.maximum(img[breast], 1)  # tissue never equals the background value
    img[rows // 3, x0] = top  # one pixel at full scale: exercises the top of the range
    return np.clip(np.rint(img), 0, top).astype(np.uint16)


def make_mg(
    laterality: str | None = "L",
    view: str | None = "CC",
    *,
    rows: int = 300,
    cols: int = 200,
    bits: int = 12,
    monochrome1: bool = False,
    study_uid: str | None = None,
    sop_class: str = MG_FOR_PRESENTATION,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", ""),
    view_tags: str = "sct",  # "sct" | "srt" | "snm3" | "position" | "none"
    view_position: str | None = None,  # default: `view`
    laterality_tag: str = "image",  # "image" | "series" | "frame" | "none"
    modifiers: Iterable[str] = (),
    series_description: str | None = None,
    orientation: bool = True,
    padding_value: int | None = None,
    padding_rows: int = 0,  # top rows set to the padding value
    window: tuple[float, float, str] | None = None,  # (centre, width, VOILUTFunction)
    acquisition: str = "20240101120000",
    instance_number: int = 1,
    implant: bool = False,
    seed: int = 0,
    pixels: np.ndarray | None = None,  # display-sense values; default: synthetic_breast
) -> tuple[Dataset, np.ndarray]:
    """(dataset, display) where `display` holds the display-sense values (MONOCHROME2 sense,
    padding at 0) that a correct reader recovers before the 16-bit rescale."""
    top = 2**bits - 1
    display = (pixels if pixels is not None else
               synthetic_breast(rows, cols, laterality or "L", bits, seed)).astype(np.uint16)
    rows, cols = display.shape
    stored = (top - display) if monochrome1 else display.copy()
    if padding_value is not None and padding_rows:
        stored[:padding_rows] = padding_value
        display = display.copy()
        display[:padding_rows] = 0

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID = "SYNTHETIC^MAMMO", "SYN0001"
    ds.StudyDate, ds.StudyID, ds.AccessionNumber = "20240101", "1", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, instance_number
    ds.AcquisitionDateTime = acquisition
    ds.Modality = "MG"
    ds.PresentationIntentType = ("FOR PROCESSING" if sop_class == MG_FOR_PROCESSING
                                 else "FOR PRESENTATION")
    ds.ImageType = list(image_type)
    ds.BodyPartExamined = "BREAST"
    if laterality is not None:
        if laterality_tag == "image":
            ds.ImageLaterality = laterality
        elif laterality_tag == "series":
            ds.Laterality = laterality
        elif laterality_tag == "frame":
            anatomy = Dataset()
            anatomy.FrameLaterality = laterality
            group = Dataset()
            group.FrameAnatomySequence = DicomSequence([anatomy])
            ds.SharedFunctionalGroupsSequence = DicomSequence([group])
    if view is not None and view_tags != "none":
        if view_tags != "position":
            sct, srt, meaning = VIEW_CODES[view]
            scheme = {"sct": "SCT", "srt": "SRT", "snm3": "SNM3"}[view_tags]
            item = code_item(sct if scheme == "SCT" else srt, meaning, scheme)
            item.ViewModifierCodeSequence = DicomSequence(
                [code_item(*MODIFIER_CODES[m]) for m in modifiers])
            ds.ViewCodeSequence = DicomSequence([item])
        ds.ViewPosition = view_position if view_position is not None else view
    if series_description is not None:
        ds.SeriesDescription = series_description
    if orientation and laterality in {"L", "R"}:
        # Row direction: L breasts as generated point anterior to the right ('A').
        column = "F" if view == "MLO" else ("R" if laterality == "L" else "L")
        ds.PatientOrientation = ["A" if laterality == "L" else "P", column]
    ds.BreastImplantPresent = "YES" if implant else "NO"
    ds.PartialView = "NO"
    ds.BurnedInAnnotation = "NO"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = window
    ds.set_pixel_data(stored, "MONOCHROME1" if monochrome1 else "MONOCHROME2", bits)
    if padding_value is not None:
        ds.PixelPaddingValue = padding_value
    return ds, display


def save_mg(ds: Dataset, path: Path, syntax: str = ExplicitVRLittleEndian,
            **encode_options: object) -> Path:
    """Write `ds` with transfer syntax `syntax` (compressing a copy when needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    syntax = UID(syntax)
    if syntax == ExplicitVRLittleEndian:
        ds.save_as(path, enforce_file_format=True)
    elif syntax == DeflatedExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    elif syntax in {JPEGLossless, JPEGLosslessSV1}:
        # pydicom cannot encode JPEG Lossless: transcode with python-gdcm.
        plain = path.with_suffix(".plain.tmp")
        ds.save_as(plain, enforce_file_format=True)
        try:
            gdcm_transcode(plain, path, syntax)
        finally:
            plain.unlink()
    else:
        copy = pydicom.dcmread(_to_bytes(ds))
        if syntax == JPEG2000 and not encode_options:
            encode_options = {"j2k_cr": [20]}
        copy.compress(syntax, **encode_options)  # type: ignore[arg-type]
        copy.save_as(path, enforce_file_format=True)
    return path


def _to_bytes(ds: Dataset) -> object:
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return buffer


def gdcm_transcode(src: Path, dst: Path, syntax: str) -> None:
    import gdcm  # python-gdcm

    ts = (gdcm.TransferSyntax.JPEGLosslessProcess14_1 if syntax == JPEGLosslessSV1
          else gdcm.TransferSyntax.JPEGLosslessProcess14)
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    if not reader.Read():
        raise RuntimeError(f"gdcm cannot read {src}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(ts))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise RuntimeError("gdcm transcode failed")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise RuntimeError(f"gdcm cannot write {dst}")


def write_exam(folder: Path, *, study_uid: str | None = None, names: str = "{lat}_{view}.dcm",
               seed: int = 0, **kwargs: object) -> dict[str, Path]:
    """Write the four screening views of one study into `folder`; returns {'L-CC': path, ...}."""
    study_uid = study_uid or generate_uid()
    written: dict[str, Path] = {}
    for i, (lat, view) in enumerate((("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))):
        ds, _ = make_mg(lat, view, study_uid=study_uid, seed=seed + i, instance_number=i + 1,
                        **kwargs)  # type: ignore[arg-type]
        written[f"{lat}-{view}"] = save_mg(ds, Path(folder) / names.format(lat=lat, view=view))
    return written


def write_decoys(folder: Path, study_uid: str) -> dict[str, Path]:
    """Images a screening loader must not use, in the same study: tomosynthesis, synthetic 2D,
    spot, magnification, a non-screening ML view and a FOR PROCESSING image."""
    folder = Path(folder)
    out: dict[str, Path] = {}
    tomo, _ = make_mg("L", "CC", study_uid=study_uid, sop_class=BREAST_TOMO,
                      image_type=("ORIGINAL", "PRIMARY", "TOMOSYNTHESIS", "NONE"))
    out["tomo"] = save_mg(tomo, folder / "tomo_lcc.dcm")
    synth, _ = make_mg("L", "CC", study_uid=study_uid,
                       image_type=("DERIVED", "PRIMARY", "TOMOSYNTHESIS", "GENERATED_2D"),
                       series_description="L CC C-View")
    out["synthetic"] = save_mg(synth, folder / "cview_lcc.dcm")
    spot, _ = make_mg("R", "CC", study_uid=study_uid, modifiers=["spot"], view_position="SCC")
    out["spot"] = save_mg(spot, folder / "spot_rcc.dcm")
    mag, _ = make_mg("R", "MLO", study_uid=study_uid, modifiers=["mag"], view_position="MMLO")
    out["mag"] = save_mg(mag, folder / "mag_rmlo.dcm")
    ml, _ = make_mg("L", "ML", study_uid=study_uid)
    out["ml"] = save_mg(ml, folder / "lml.dcm")
    raw, _ = make_mg("L", "MLO", study_uid=study_uid, sop_class=MG_FOR_PROCESSING)
    out["for_processing"] = save_mg(raw, folder / "raw_lmlo.dcm")
    return out


def make_film(laterality: str, view: str, *, patient: str = "P_00001", abnormality: str = "Mass",
              seed: int = 0, rows: int = 300, cols: int = 200) -> Dataset:
    """A digitised-film image shaped like CBIS-DDSM (no patient data): Secondary Capture with
    Modality MG, its own StudyInstanceUID, only the series Laterality, no ViewPosition or
    ViewCodeSequence, the view only in PatientID/PatientName (`Mass-Test_P_00001_LEFT_CC`),
    PatientOrientation misused as 'CC'/'MLO', 16-bit MONOCHROME2."""
    side = {"L": "LEFT", "R": "RIGHT"}[laterality]
    ds, _ = make_mg(laterality, view, rows=rows, cols=cols, bits=16, seed=seed,
                    sop_class=SECONDARY_CAPTURE, image_type=("DERIVED", "PRIMARY"),
                    view_tags="none", laterality_tag="series", orientation=False,
                    series_description="full mammogram images")
    ds.PatientID = ds.PatientName = f"{abnormality}-Test_{patient}_{side}_{view}"
    ds.PatientOrientation = view
    ds.ConversionType = "WSD"
    for keyword in ("PresentationIntentType", "BreastImplantPresent", "PartialView",
                    "AcquisitionDateTime"):
        delattr(ds, keyword)
    return ds


def write_film_exam(folder: Path, *, patient: str = "P_00001", seed: int = 0,
                    syntax: str = RLELossless, names: str | None = None) -> dict[str, Path]:
    """Four digitised-film views of one patient in `folder`, each in its own study; RLE by
    default. Files are in CBIS-DDSM's nested layout (`<PatientID>/<uid>/<uid>/1-1.dcm`) unless
    `names` is given (e.g. 'IM{i}': names that say nothing)."""
    written: dict[str, Path] = {}
    for i, (lat, view) in enumerate((("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))):
        ds = make_film(lat, view, patient=patient, seed=seed + i)
        path = (Path(folder) / names.format(i=i) if names is not None else
                Path(folder) / str(ds.PatientID) / generate_uid() / generate_uid() / "1-1.dcm")
        written[f"{lat}-{view}"] = save_mg(ds, path, syntax)
    return written


def save_with_text(ds: Dataset, path: Path, values: dict[str, str]) -> Path:
    """Save `ds` with header values that break their VR (e.g. a name in RescaleSlope), as a
    corrupt export writes them: pydicom cannot hold such values, so the bytes are patched."""
    import struct

    from pydicom.datadict import tag_for_keyword

    placeholders = {}
    for keyword, text in values.items():
        text = text + " " * (len(text) % 2)  # DICOM values have an even length
        placeholder = "1" * len(text)
        setattr(ds, keyword, placeholder)
        placeholders[keyword] = (placeholder, text)
    save_mg(ds, path)
    data = Path(path).read_bytes()
    for keyword, (placeholder, text) in placeholders.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None
        element = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + ds[keyword].VR.encode()
        head = element + struct.pack("<H", len(text))
        if head + placeholder.encode() not in data:
            raise ValueError(f"{keyword} is not in {path} as expected")
        data = data.replace(head + placeholder.encode(), head + text.encode(), 1)
    Path(path).write_bytes(data)
    return Path(path)


def with_unknown_vr(path: Path, group: int, element: int) -> Path:
    """Rewrite the VR of one explicit-VR element as 'ZZ' (a mutated header)."""
    import struct

    data = bytearray(Path(path).read_bytes())
    at = data.find(struct.pack("<HH", group, element), 132)
    if at < 0:
        raise ValueError(f"({group:04X},{element:04X}) is not in {path}")
    data[at + 4:at + 6] = b"ZZ"
    Path(path).write_bytes(bytes(data))
    return Path(path)
