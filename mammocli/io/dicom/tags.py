"""What a DICOM header says about an image: laterality, view, modifiers, kind and facing.

Pure functions of a pydicom Dataset (read with `stop_before_pixels=True`). Nothing here returns
header text that could identify a patient: only codes we map to our own vocabulary.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydicom.dataset import Dataset

from ...views import Angle, Side

# CID 4014 "View for Mammography": SNOMED CT and legacy SNOMED-RT (SRT / SNM3) codes.
_VIEW_CODES: dict[str, str] = {
    "399162004": "CC", "R-10242": "CC",
    "399368009": "MLO", "R-10226": "MLO",
    "399260004": "ML", "R-10224": "ML",
    "399352003": "LM", "R-10228": "LM",
    "399099002": "LMO", "R-10230": "LMO",
    "399196006": "FB", "R-10244": "FB",
    "399188001": "SIO", "R-102D0": "SIO",
    "441555000": "ISO", "R-40AAA": "ISO",
    "399192008": "XCCL", "R-1024A": "XCCL", "Y-X1770": "XCCL",
    "399101009": "XCCM", "R-1024B": "XCCM", "Y-X1771": "XCCM",
    "127457009": "SPECIMEN", "G-8310": "SPECIMEN",
}
_VIEW_SCHEMES = {"SCT", "SRT", "SNM3", "99SDM"}


class Modifier(str, Enum):
    SPOT = "spot compression"
    MAGNIFICATION = "magnification"
    IMPLANT_DISPLACED = "implant displaced"
    OTHER = "modified"  # rolled, tangential, cleavage, axillary tail, nipple in profile ...


# CID 4015 "View Modifier for Mammography".
_MODIFIER_CODES: dict[str, Modifier] = {
    "399163009": Modifier.MAGNIFICATION, "R-102D6": Modifier.MAGNIFICATION,
    "399055006": Modifier.SPOT, "R-102D7": Modifier.SPOT,
    "399209000": Modifier.IMPLANT_DISPLACED, "R-102D5": Modifier.IMPLANT_DISPLACED,
}

# ACR MQCM abbreviations as found in ViewPosition.
_BASE_VIEWS = {"CC", "MLO", "ML", "LM", "LMO", "XCCL", "XCCM", "FB", "SIO", "ISO", "AT", "CV"}
_SUFFIXES: dict[str, Modifier] = {
    "ID": Modifier.IMPLANT_DISPLACED, "RL": Modifier.OTHER, "RM": Modifier.OTHER,
    "RI": Modifier.OTHER, "RS": Modifier.OTHER, "NP": Modifier.OTHER, "AC": Modifier.OTHER,
    "IMF": Modifier.OTHER, "AX": Modifier.OTHER, "TAN": Modifier.OTHER,
}
_PREFIXES: dict[str, Modifier] = {"M": Modifier.MAGNIFICATION, "S": Modifier.SPOT}
_SCREENING = {"CC": Angle.CC, "MLO": Angle.MLO}

# Last resort: free text such as "L CC", "LEFT_MLO", "..._MG_R_CC_ANON".
_VIEW_IN_TEXT = re.compile(r"(?:^|[^A-Z])(L|R|LEFT|RIGHT)[ _-]*(CC|MLO)(?:[^A-Z]|$)")


class ViewSource(str, Enum):
    CODE = "ViewCodeSequence"
    POSITION = "ViewPosition"
    MEANING = "CodeMeaning"
    TEXT = "SeriesDescription/ProtocolName"
    PATIENT_ID = "PatientID"  # some public sets (CBIS-DDSM) keep the view only there
    FILE_NAME = "file name"
    MAPPING = "views CSV"


@dataclass(frozen=True)
class ViewInfo:
    """A file's view as resolved from its header; `base` is an ACR abbreviation (CC, MLO, ML)."""

    side: Side | None
    base: str | None
    modifiers: frozenset[Modifier]
    view_source: ViewSource | None

    @property
    def angle(self) -> Angle | None:
        return _SCREENING.get(self.base or "")


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, str | bytes):
        return str(value).strip().upper()
    return "\\".join(str(v) for v in value).strip().upper()


def _side(letter: str) -> Side | None:
    return {"L": Side.LEFT, "R": Side.RIGHT}.get(letter.strip().upper()[:1] if letter else "")


def _frame_laterality(ds: Dataset) -> str:
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for item in ds.get(group) or []:
            for anatomy in item.get("FrameAnatomySequence") or []:
                if anatomy.get("FrameLaterality"):
                    return str(anatomy.FrameLaterality)
    return ""


def resolve_laterality(ds: Dataset) -> tuple[Side | None, str]:
    """(side, raw value): ImageLaterality -> Laterality -> FrameLaterality. B and U give None."""
    for raw in (_text(ds, "ImageLaterality"), _text(ds, "Laterality"), _frame_laterality(ds)):
        if raw:
            # The first present attribute decides: a 'B' (both) image is not a single breast.
            return (_side(raw) if raw in {"L", "R"} else None), raw
    return None, ""


def parse_view_position(text: str) -> tuple[str | None, frozenset[Modifier]]:
    """Parse an ACR abbreviation such as 'MLO', 'MCC', 'SCC', 'CC ID', 'RCC', 'L MLO'.

    ML is its own view (medio-lateral), not a magnified L-something: a leading M/S is a
    magnification/spot prefix only when the rest is a base view.
    """
    tokens = [t for t in re.split(r"[\s_\-\\/]+", text.strip().upper()) if t]
    # A leading laterality token ("L MLO") is not part of the view.
    if len(tokens) > 1 and tokens[0] in {"L", "R", "LEFT", "RIGHT", "B"}:
        tokens = tokens[1:]
    if not tokens:
        return None, frozenset()
    modifiers: set[Modifier] = set()
    for extra in tokens[1:]:
        if extra in _SUFFIXES:
            modifiers.add(_SUFFIXES[extra])
        else:
            return None, frozenset()
    word = tokens[0]
    for suffix, modifier in _SUFFIXES.items():
        # 'CCID', 'MLOID'
        if word.endswith(suffix) and word[: -len(suffix)] in _BASE_VIEWS:
            word = word[: -len(suffix)]
            modifiers.add(modifier)
            break
    if word in _BASE_VIEWS:
        return word, frozenset(modifiers)
    if word[:1] in _PREFIXES and word[1:] in _BASE_VIEWS:
        modifiers.add(_PREFIXES[word[:1]])
        return word[1:], frozenset(modifiers)
    if word[:1] in {"L", "R"} and word[1:] in _BASE_VIEWS:  # 'LCC', 'RMLO'
        return word[1:], frozenset(modifiers)
    return None, frozenset()


def _code_modifiers(items: Iterable[Any]) -> set[Modifier]:
    found: set[Modifier] = set()
    for item in items:
        code = str(item.get("CodeValue", "")).strip()
        found.add(_MODIFIER_CODES.get(code, Modifier.OTHER))
    return found


def view_modifiers(ds: Dataset) -> frozenset[Modifier]:
    """Modifiers coded in ViewModifierCodeSequence (nested in the view item, or at the root)."""
    found = _code_modifiers(ds.get("ViewModifierCodeSequence") or [])
    for item in ds.get("ViewCodeSequence") or []:
        found |= _code_modifiers(item.get("ViewModifierCodeSequence") or [])
    return frozenset(found)


def _view_from_codes(ds: Dataset) -> tuple[str | None, ViewSource | None]:
    for item in ds.get("ViewCodeSequence") or []:
        code = str(item.get("CodeValue", "")).strip().upper()
        scheme = str(item.get("CodingSchemeDesignator", "")).strip().upper()
        if code in _VIEW_CODES and (scheme in _VIEW_SCHEMES or not scheme):
            return _VIEW_CODES[code], ViewSource.CODE
        meaning = str(item.get("CodeMeaning", "")).strip().lower().replace("-", " ")
        if "medio lateral oblique" in meaning or "mediolateral oblique" in meaning:
            return "MLO", ViewSource.MEANING
        if meaning in {"cranio caudal", "craniocaudal"}:
            return "CC", ViewSource.MEANING
    return None, None


def _view_from_text(text: str) -> tuple[Side | None, str | None]:
    found = {(m.group(1)[0], m.group(2)) for m in _VIEW_IN_TEXT.finditer(text.upper())}
    if len(found) != 1:
        return None, None
    letter, base = found.pop()
    return _side(letter), base


def resolve_view(ds: Dataset, file_name: str) -> ViewInfo:
    """Laterality and view with the fallbacks of issue 5 (most reliable source first).

    Free text (SeriesDescription, ProtocolName, PatientID, the file name) is used only when the
    header has no view tags; the caller warns in that case (ViewInfo.view_source tells).
    """
    side, _ = resolve_laterality(ds)
    modifiers = set(view_modifiers(ds))
    base, source = _view_from_codes(ds)
    position_base, position_mods = parse_view_position(_text(ds, "ViewPosition"))
    if base is None and position_base is not None:
        base, source = position_base, ViewSource.POSITION
    if position_base is not None:
        modifiers |= position_mods  # 'SCC' or 'CC ID' adds spot/implant even when coded
    if base is None:
        for text, text_source in (
            (_text(ds, "SeriesDescription"), ViewSource.TEXT),
            (_text(ds, "ProtocolName"), ViewSource.TEXT),
            (_text(ds, "PatientID"), ViewSource.PATIENT_ID),  # parsed, never shown
            (file_name, ViewSource.FILE_NAME),
        ):
            text_side, text_base = _view_from_text(text)
            if text_base is not None:
                base, source = text_base, text_source
                side = side or text_side
                break
    return ViewInfo(side=side, base=base, modifiers=frozenset(modifiers), view_source=source)


def patient_key(ds: Dataset) -> str:
    """A hash of the PatientID with any view token removed ('..._LEFT_CC' -> '...'), so that
    the per-image IDs of digitised-film sets (CBIS-DDSM) name one patient. Never the value."""
    text = _text(ds, "PatientID")
    stripped = _VIEW_IN_TEXT.sub(lambda m: m.group(0)[0] if m.start() > 0 else "", text)
    return hashlib.sha256(("mammocli-patient:" + stripped.strip(" _-")).encode()).hexdigest()


def facing_from_orientation(ds: Dataset) -> Side | None:
    """Which way the breast points as stored, from PatientOrientation's row direction.

    The row value is the patient direction of increasing column index: 'A' (anterior, the
    nipple) means the nipple is at the right edge, so the breast faces right; 'P' faces left.
    Misused values (CBIS-DDSM stores 'CC'/'MLO') give None.
    """
    value = ds.get("PatientOrientation")
    if value is None or isinstance(value, str | bytes) or len(value) != 2:
        return None
    row = str(value[0]).strip().upper()
    if not row or set(row) - set("APLRHF"):
        return None
    return {"A": Side.RIGHT, "P": Side.LEFT}.get(row[0])


# ---- image kind --------------------------------------------------------------------------------

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_TOMO_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.13.1.3": "breast tomosynthesis volume",
    "1.2.840.10008.5.1.4.1.1.13.1.4": "breast projection (tomosynthesis) image",
    "1.2.840.10008.5.1.4.1.1.13.1.5": "breast projection (tomosynthesis) image",
}
_TOMO_TYPES = {"TOMO_PROJ", "TOMOSYNTHESIS", "TOMO_SCOUT", "VOLUME"}
_PROCEDURE_TYPES = {"STEREO", "STEREO_SCOUT", "STEREO_PAIR", "PREFIRE", "POSTFIRE", "POSTBIOPSY",
                    "POSTMARKER", "PRE_CONTRAST", "POST_CONTRAST", "BIOPSY"}
_SYNTHETIC_TEXT = re.compile(r"C-?VIEW|V-?PREVIEW|S-?VIEW|SYNTH|\bS2D\b|2DSM|INTELLIGENT ?2D")
_TOMO_TEXT = re.compile(r"\bTOMO|\bDBT\b|\b3D\b")


class Kind(str, Enum):
    """What sort of image a header describes, for the selection rules."""

    STANDARD = "2D mammogram"
    FOR_PROCESSING = "FOR PROCESSING image"
    SECONDARY_CAPTURE = "secondary capture"
    SYNTHETIC = "synthesized 2D image"


def image_kind(ds: Dataset) -> tuple[Kind | None, str]:
    """(kind, why): kind None means never usable, and `why` says what the file is."""
    sop_class = str(ds.get("SOPClassUID", "")).strip()
    modality = _text(ds, "Modality")
    image_type = [str(v).strip().upper() for v in (ds.get("ImageType") or [])]
    if isinstance(ds.get("ImageType"), str):
        image_type = [v.strip().upper() for v in str(ds.ImageType).split("\\")]
    described = " ".join(_text(ds, k) for k in ("SeriesDescription", "ProtocolName",
                                                  "ImageComments"))
    if sop_class in _TOMO_CLASSES:
        return None, _TOMO_CLASSES[sop_class]
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        frames = 1
    if frames > 1:
        return None, f"multi-frame image ({frames} frames: tomosynthesis or a projection set)"
    is_mg = modality == "MG" or _text(ds, "BodyPartExamined") == "BREAST"
    if sop_class.startswith(_SECONDARY_CAPTURE_PREFIX):
        if not is_mg:
            return None, "secondary capture that is not a mammogram"
        kind = Kind.SECONDARY_CAPTURE
    elif sop_class in {MG_FOR_PRESENTATION, DX_FOR_PRESENTATION}:
        kind = Kind.STANDARD
    elif sop_class in {MG_FOR_PROCESSING, DX_FOR_PROCESSING}:
        kind = Kind.FOR_PROCESSING
    elif not sop_class and modality == "MG":
        kind = Kind.STANDARD
    else:
        return None, "not a 2D mammogram (SOP class " + _sop_class_name(sop_class) + ")"
    if sop_class in {DX_FOR_PRESENTATION, DX_FOR_PROCESSING} and not is_mg:
        return None, "not a mammogram (DX image of another body part)"
    if _text(ds, "PresentationIntentType") == "FOR PROCESSING" and kind is Kind.STANDARD:
        kind = Kind.FOR_PROCESSING
    value3 = image_type[2] if len(image_type) > 2 else ""
    value4 = image_type[3] if len(image_type) > 3 else ""
    value5 = image_type[4] if len(image_type) > 4 else ""
    if value4 == "GENERATED_2D" or _SYNTHETIC_TEXT.search(described):
        return Kind.SYNTHETIC, "synthesized 2D image (generated from tomosynthesis)"
    if value3 in _TOMO_TYPES or _TOMO_TEXT.search(described):
        return None, "tomosynthesis image"
    if value3 in _PROCEDURE_TYPES:
        return None, f"procedure image ({value3.lower().replace('_', ' ')})"
    if value4 in {"ADDITION", "SUBTRACTION"} or value5 in {"LOW_ENERGY", "HIGH_ENERGY"}:
        return None, "contrast-enhanced mammography image"
    if len(image_type) > 1 and image_type[1] == "SECONDARY" and kind is Kind.STANDARD:
        return None, "secondary (derived) image, e.g. a screen capture"
    return kind, kind.value


def _sop_class_name(uid: str) -> str:
    from pydicom.uid import UID

    if not uid:
        return "missing"
    name = UID(uid).name
    return name if name != uid else uid  # standard UIDs are not PHI
