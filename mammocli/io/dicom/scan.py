"""Header-only reading of DICOM files: detection by content, validation, one record per file.

Reading stops before the pixel data (`stop_before_pixels=True`), so scanning an archive costs a
few kilobytes per file (one read of the first 64 KiB, see `_parse_header`). The pixel element is
still located, so a missing or truncated PixelData is reported here, before any decoding.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from ...errors import InputError
from ...views import Side
from ..exam import DicomUids
from .header_fields import header_fields
from .tags import (
    Kind,
    ViewInfo,
    facing_from_orientation,
    image_kind,
    patient_key,
    resolve_view,
)

_PREAMBLE = 128
_MAGIC = b"DICM"
_PIXEL_TAG = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_SEQUENCE_END = 0xFFFEE0DD


def not_dicom_reason(path: Path) -> str:
    """Why `is_dicom_file` said no, in words (a file cut inside the preamble is not 'not DICOM')."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if size < _PREAMBLE + len(_MAGIC):
        return (f"not a DICOM file, or one cut short: {size} bytes, less than the 132-byte "
                "preamble and 'DICM' marker")
    return "not a DICOM file (no 'DICM' marker after the 128-byte preamble)"


def is_dicom_file(path: Path) -> bool:
    """True when the file carries the DICOM Part 10 signature: 128-byte preamble + 'DICM'."""
    try:
        with open(path, "rb") as f:
            f.seek(_PREAMBLE)
            return f.read(4) == _MAGIC
    except OSError:
        return False


@dataclass(frozen=True)
class PixelElement:
    """Where PixelData sits, as far as can be told without reading it."""

    present: bool
    length: int | None  # None: encapsulated (undefined length) or not checkable (deflated)
    available: int | None  # bytes left in the file for the value
    problem: str | None = None  # an encapsulated stream that is cut short or malformed


@dataclass(frozen=True)
class DicomHeader:
    """What discovery needs to know about one DICOM file. Holds no patient identifiers except
    the UIDs used for grouping, which callers must not print."""

    path: Path
    relative: str
    study_uid: str
    kind: Kind | None
    kind_reason: str
    view: ViewInfo
    facing: Side | None
    problem: str | None  # set: the file cannot be decoded (reason)
    implant_present: bool
    partial_view: bool
    original: bool
    acquired: str  # sort key only (date+time digits); never shown
    instance_number: int
    pixels: int  # Rows x Columns
    patient: str = ""  # hash of the PatientID (see dicom_tags.patient_key); never the value
    uids: DicomUids | None = None  # for --include-uids results only
    # the allow-listed, non-identifying fields (header_fields.py), as (name, value) pairs
    fields: tuple[tuple[str, str | float], ...] = ()


@contextmanager
def pydicom_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record the warnings raised in the block instead of printing them: pydicom's often quote
    header values (names, UIDs). Values are converted lazily, when first read, so a block must
    cover every read of a header, not only its parsing."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


_TAG = re.compile(r"\(([0-9A-Fa-f]{4}),\s*([0-9A-Fa-f]{4})\)")
_WORD = re.compile(r"[A-Z][A-Za-z0-9]+")
_VR = re.compile(r"\bVR ([A-Z]{2})\b")


def warning_notes(caught: list[warnings.WarningMessage]) -> list[str]:
    """pydicom's warnings about a file, in our words: the category and the elements named
    (keyword, or the tag number), never the text, which often quotes header values."""
    notes: list[str] = []
    for record in caught:
        # Only pydicom's data warnings: not its deprecations, nor another thread's warnings.
        if not issubclass(record.category, UserWarning) or "pydicom" not in Path(
                record.filename).parts:
            continue
        text = str(record.message)
        names = {keyword_for_tag(int(g + e, 16)) or f"({g.upper()},{e.upper()})"
                 for g, e in _TAG.findall(text)}
        names |= {w for w in _WORD.findall(text) if tag_for_keyword(w) is not None}
        names |= {f"a value of VR {vr}" for vr in _VR.findall(text)}
        about = f" about {', '.join(sorted(names))}" if names else ""
        note = f"pydicom warned while reading the file ({record.category.__name__}{about})"
        if note not in notes:
            notes.append(note)
    return notes


def read_header(path: Path, relative: str) -> tuple[Dataset, PixelElement]:
    """Parse a file's header only. InputError when it is not a readable DICOM file.
    pydicom warns about odd values (callers record them: `pydicom_warnings`)."""
    try:
        with open(path, "rb") as f:
            ds, element = _parse_header(f)
    except InvalidDicomError as exc:
        raise InputError(
            f"{relative}: not a DICOM file (no 'DICM' marker after the 128-byte preamble)",
            hint="remove the file from the exam folder or export it again as DICOM Part 10",
        ) from exc
    except Exception as exc:  # any parser error is this file's rejection, never the batch's
        raise InputError(
            f"{relative}: cannot read the DICOM header ({type(exc).__name__}); the file may be "
            "truncated or corrupt",
            hint="export the image again from the archive",
        ) from exc
    return ds, element


# The header is parsed from the file's first bytes held in memory (one read; pydicom's many small
# reads and seeks on a file object cost more than parsing): a header that ends beyond them is read
# again from the file, so the outcome is the same as parsing the file itself.
_PREFIX = 1 << 16


def _parse_header(f: BinaryIO) -> tuple[Dataset, PixelElement]:
    size = os.fstat(f.fileno()).st_size
    prefix = f.read(_PREFIX)
    buffer = BytesIO(prefix)
    whole = len(prefix) >= size
    try:
        ds = pydicom.dcmread(buffer, stop_before_pixels=True)
    except Exception:
        if whole:
            raise
    else:
        if whole:
            return ds, _pixel_element(buffer, ds)
        if _stopped_at_pixels(prefix, buffer.tell(), ds):
            f.seek(buffer.tell())  # the element is checked against the whole file
            return ds, _pixel_element(f, ds)
    f.seek(0)
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    return ds, _pixel_element(f, ds)


def _stopped_at_pixels(prefix: bytes, at: int, ds: Dataset) -> bool:
    """True when parsing `prefix` stopped at the PixelData tag (not at the prefix's end): every
    element before it was then read whole, as from the file."""
    syntax = _syntax(ds)
    if syntax == DeflatedExplicitVRLittleEndian or at + 4 > len(prefix):
        return False  # a deflated dataset's positions are in the inflated stream
    little = not syntax.is_valid or syntax.is_little_endian
    group, elem = struct.unpack(("<" if little else ">") + "HH", prefix[at:at + 4])
    return bool((group << 16 | elem) == _PIXEL_TAG)


def _syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    return UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")


# Elements discovery and decoding read (group 0028, the pixel description, is read whole).
# Others are never converted, so a mutated element we do not use cannot reject an image.
_READ_KEYWORDS = frozenset({
    "AcquisitionDate", "AcquisitionDateTime", "AcquisitionTime", "BodyPartExamined",
    "BreastImplantPresent", "ContentDate", "ContentTime", "ImageComments", "ImageLaterality",
    "ImageType", "InstanceNumber", "Laterality", "Modality", "PartialView", "PatientID",
    "PatientOrientation", "PerFrameFunctionalGroupsSequence", "PresentationIntentType",
    "ProtocolName", "SOPClassUID", "SOPInstanceUID", "SeriesDescription", "SeriesInstanceUID",
    "SharedFunctionalGroupsSequence", "StudyInstanceUID", "ViewCodeSequence",
    "ViewModifierCodeSequence", "ViewPosition",
})
# The same as tag numbers: a set lookup per element instead of a dictionary search
_READ_TAGS = frozenset(tag_for_keyword(k) for k in _READ_KEYWORDS)


def check_elements(ds: Dataset, relative: str, *, nested: bool = False) -> None:
    """Convert the elements we read now, so that a mutated one (unknown VR, a number holding
    text) rejects the file here, naming the tag, instead of failing wherever it is read.
    The value is never shown: it may be a name or an ID."""
    for tag in list(ds.keys()):
        group = tag >> 16
        if group == 0x7FE0 or not (nested or group == 0x0028 or tag in _READ_TAGS):
            continue
        try:
            element = ds[tag]
            items = list(element.value) if element.VR == "SQ" else []
            if element.VR in {"DS", "IS"} and tag not in _SORT_TAGS:
                _check_numbers(element.value)
        except Exception as exc:
            keyword = keyword_for_tag(tag) if not tag.is_private else ""
            raise InputError(
                f"{relative}: the DICOM header element {tag} ({keyword or 'unknown tag'}) "
                f"cannot be read: {_element_problem(exc)}",
                hint="export the image again from the archive",
            ) from exc
        for item in items:
            if isinstance(item, Dataset):
                check_elements(item, relative, nested=True)


# Only a tie-break: a bad value there sorts the file last instead of rejecting the image.
_SORT_TAGS = frozenset({tag_for_keyword("InstanceNumber")})


class _NotANumber(ValueError):
    pass


def _check_numbers(value: object) -> None:
    """pydicom keeps text that is not a number in DS/IS elements (it only warns)."""
    from pydicom.multival import MultiValue

    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    for v in values:
        if v is not None and v != "" and not isinstance(v, int | float):
            raise _NotANumber


def _element_problem(exc: Exception) -> str:
    if isinstance(exc, NotImplementedError):
        return "unknown value representation (VR)"
    if isinstance(exc, _NotANumber):
        return "the value is not a number (the export is corrupt)"
    return f"the value does not fit its value representation ({type(exc).__name__})"


def _pixel_element(f: BinaryIO, ds: Dataset) -> PixelElement:
    syntax = _syntax(ds)
    if syntax == DeflatedExplicitVRLittleEndian:
        # The dataset was parsed from an inflated copy: positions in `f` mean nothing.
        return PixelElement(present=True, length=None, available=None)
    # stop_before_pixels leaves the file at the start of the PixelData element when present.
    start = f.tell()
    head = f.read(12)
    f.seek(0, 2)
    size = f.tell()
    if len(head) < 8:
        return PixelElement(present=False, length=None, available=None)
    little = not syntax.is_valid or syntax.is_little_endian
    endian = "<" if little else ">"
    group, elem = struct.unpack(endian + "HH", head[:4])
    if (group << 16 | elem) != _PIXEL_TAG:
        return PixelElement(present=False, length=None, available=None)
    implicit = syntax.is_valid and syntax.is_implicit_VR
    if implicit:
        (length,) = struct.unpack(endian + "I", head[4:8])
        header_len = 8
    else:
        if len(head) < 12:
            return PixelElement(present=True, length=0, available=0)
        (length,) = struct.unpack(endian + "I", head[8:12])
        header_len = 12
    if length == _UNDEFINED_LENGTH:
        return PixelElement(present=True, length=None, available=None,
                            problem=_encapsulated_problem(f, start + header_len, size))
    return PixelElement(present=True, length=length, available=size - start - header_len)


def _encapsulated_problem(f: BinaryIO, pos: int, size: int) -> str | None:
    """Walk the items of an encapsulated PixelData (headers only): each must fit in the file and
    the sequence must end with its delimiter, else the file was cut or corrupted."""
    items = 0
    while True:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return ("pixel data truncated (the compressed image ends before its sequence "
                    "delimiter)")
        group, elem, length = struct.unpack("<HHI", head)
        tag = group << 16 | elem
        if tag == _SEQUENCE_END:
            return None if items >= 2 else "no compressed image fragment in the pixel data"
        if tag != _ITEM or length == _UNDEFINED_LENGTH:
            return "corrupt encapsulated pixel data (an item header is malformed)"
        if pos + 8 + length > size:
            return (f"pixel data truncated (a compressed fragment declares {length} bytes, "
                    f"{max(size - pos - 8, 0)} are present)")
        items += 1  # the first item is the basic offset table
        pos += 8 + length


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def header_problem(ds: Dataset, element: PixelElement, max_pixels: int) -> str | None:
    """Why the pixels of this header cannot be decoded safely, or None.

    Checked before any decoding: a corrupt header must not make a decoder allocate gigabytes.
    """
    required = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation")
    missing = [k for k in required if k not in ds or ds.get(k) in (None, "")]
    if missing:
        return (f"incomplete DICOM header (no {', '.join(missing)}); the file may be truncated")
    rows, cols = _int(ds, "Rows") or 0, _int(ds, "Columns") or 0
    frames = _int(ds, "NumberOfFrames") or 1
    samples = _int(ds, "SamplesPerPixel") or 1
    allocated, stored = _int(ds, "BitsAllocated") or 0, _int(ds, "BitsStored") or 0
    if rows <= 0 or cols <= 0:
        return f"invalid image size {rows} x {cols}"
    if rows * cols * frames > max_pixels:
        return (f"declared image size {rows} x {cols} x {frames} frame(s) exceeds the limit of "
                f"{max_pixels / 1e6:g} Mpixel; the header is corrupt or not a mammogram")
    if frames > 1:
        return (f"multi-frame image ({frames} frames: tomosynthesis or a projection set); a "
                "screening view is one 2D image")
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if samples != 1 or photometric not in {"MONOCHROME1", "MONOCHROME2"}:
        return f"{photometric} image with {samples} sample(s) per pixel; mammograms are greyscale"
    if allocated not in {8, 16}:
        return f"BitsAllocated {allocated} is not supported (8 or 16)"
    if not 1 <= stored <= allocated:
        return f"BitsStored {stored} does not fit BitsAllocated {allocated}"
    if (_int(ds, "PixelRepresentation") or 0) != 0:
        return "signed pixel data; mammograms are stored unsigned"
    if not element.present:
        return "no PixelData element (no image in the file)"
    if element.problem:
        return element.problem
    if element.length is not None and element.available is not None:
        if element.available < element.length:
            return (f"pixel data truncated ({element.available} of {element.length} bytes "
                    "present)")
        syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
        if not syntax.is_valid or not syntax.is_compressed:
            expected = rows * cols * frames * samples * allocated // 8
            if element.length not in (expected, expected + 1):  # +1: even-length padding
                return (f"PixelData holds {element.length} bytes but the header declares "
                        f"{rows} x {cols} x {frames} frame(s) at BitsAllocated {allocated} = "
                        f"{expected} bytes; BitsAllocated or the size is inconsistent with "
                        "the data")
    return None


def scan_header(path: Path, relative: str, max_pixels: int) -> tuple[DicomHeader, Dataset]:
    """One record per file for discovery. InputError: not a readable DICOM file at all."""
    # Discovery drops pydicom's warnings: reading the chosen images records them again.
    with pydicom_warnings():
        ds, element = read_header(path, relative)
        check_elements(ds, relative)
        try:
            return _record(path, relative, ds, element, max_pixels), ds
        except Exception as exc:  # a value pydicom parsed but we cannot use: this file only
            raise unusable_header(relative, exc) from exc


def _record(path: Path, relative: str, ds: Dataset, element: PixelElement,
            max_pixels: int) -> DicomHeader:
    study_uid = str(ds.get("StudyInstanceUID", "")).strip()
    kind, kind_reason = image_kind(ds)
    problem = header_problem(ds, element, max_pixels)
    acquired = (str(ds.get("AcquisitionDateTime", "")) or
                str(ds.get("AcquisitionDate", "")) + str(ds.get("AcquisitionTime", "")) or
                str(ds.get("ContentDate", "")) + str(ds.get("ContentTime", "")))
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return DicomHeader(
        path=path,
        relative=relative,
        study_uid=study_uid,
        kind=kind,
        kind_reason=kind_reason,
        view=resolve_view(ds, Path(relative).name),
        facing=facing_from_orientation(ds),
        problem=problem,
        implant_present=str(ds.get("BreastImplantPresent", "")).upper() == "YES",
        partial_view=str(ds.get("PartialView", "")).upper() == "YES",
        original=bool(image_type) and image_type[0] == "ORIGINAL",
        acquired="".join(c for c in acquired if c.isdigit() or c == "."),
        instance_number=_int(ds, "InstanceNumber") or 0,
        pixels=(_int(ds, "Rows") or 0) * (_int(ds, "Columns") or 0),
        patient=patient_key(ds),
        uids=DicomUids(
            study=str(ds.get("StudyInstanceUID", "")),
            series=str(ds.get("SeriesInstanceUID", "")),
            sop_instance=str(ds.get("SOPInstanceUID", "")),
        ),
        fields=tuple(header_fields(ds).items()),
    )


def unusable_header(relative: str, exc: Exception) -> InputError:
    """The rejection of a file whose header holds a value we cannot use (never the value)."""
    return InputError(
        f"{relative}: cannot read the DICOM header ({type(exc).__name__} on a header "
        "value); the file may be corrupt",
        hint="export the image again from the archive",
    )


def header_from_dataset(path: Path, relative: str, ds: Dataset, *, has_pixels: bool,
                        max_pixels: int) -> DicomHeader:
    """The discovery record of a header read elsewhere (DICOMweb metadata): `path` is where the
    file will be. The pixel data is not at hand, so only its presence is judged here; its size
    is checked by `scan_header` once the file is retrieved. InputError as `scan_header`."""
    element = PixelElement(present=has_pixels, length=None, available=None)
    try:
        with pydicom_warnings():  # they would quote header values
            check_elements(ds, relative)
            return _record(path, relative, ds, element, max_pixels)
    except Exception as exc:  # a value pydicom parsed but we cannot use: this file only
        raise unusable_header(relative, exc) from exc
