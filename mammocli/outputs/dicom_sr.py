"""A result as a DICOM Comprehensive SR (TID 1500 Measurement Report), for the PACS (issue 15).

Content, per study:
- one image measurement group (TID 1501) per model variant and breast, tracking identifier
  "<variant>: left breast" / "<variant>: right breast", finding site Breast (SCT 76752008) with
  laterality Left (SCT 7771000) or Right (SCT 24028007), and the breast's source images (CC and
  MLO) referenced by SOP Instance UID;
- in each group two numeric measurements, unit UCUM "1": the malignant and the benign
  probability, coded in the local scheme `99MAMMOCLI` (declared in the
  CodingSchemeIdentificationSequence): MALIG-PROB and BENIGN-PROB;
- algorithm identification (TID 4019) on each group: name "mammocli <family> <model>", version
  = the mammocli version, parameters "variant=...", "primary_variant=..." and one
  "weights <name> sha256=<hash>" per weights file;
- observation context: the device observer "mammocli"; procedure reported: Screening
  mammography (SCT 24623002).

The SR is a new series in the source study (SeriesDescription says "RESEARCH USE ONLY"), its
UIDs from MAMMOCLI_UID_ROOT when set, else highdicom's root; the patient and study modules are
copied from the source images by highdicom. This object is for the PACS: identifiers belong in
it. Never log its content.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from .. import __version__
from ..errors import ConfigError, InputError
from ..views import Side
from .files import atomic_write_bytes
from .schema import PredictionResult, Probabilities

ENV_UID_ROOT = "MAMMOCLI_UID_ROOT"
SERIES_DESCRIPTION = "mammocli AI results - RESEARCH USE ONLY"
SERIES_NUMBER = 9901
MANUFACTURER = "mammocli (research software)"

SCHEME = "99MAMMOCLI"  # local coding scheme: "99" designators are private (PS3.16 8.2)
SCHEME_NAME = "mammocli local codes"
MALIGNANT = Code("MALIG-PROB", SCHEME, "Probability of malignant finding")
BENIGN = Code("BENIGN-PROB", SCHEME, "Probability of benign finding")
UNIT = Code("1", "UCUM", "no units")
BREAST = Code("76752008", "SCT", "Breast")
LATERALITY = {Side.LEFT: Code("7771000", "SCT", "Left"),
              Side.RIGHT: Code("24028007", "SCT", "Right")}
SCREENING = Code("24623002", "SCT", "Screening mammography")

_UID_ROOT = re.compile(r"[1-9][0-9]*(\.(0|[1-9][0-9]*))*")


def uid_root_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """MAMMOCLI_UID_ROOT (e.g. your organisation's root '1.2.826.0.1.3680043.10.1234'), or None
    for highdicom's. At most 40 characters: the rest of the 64 is left for the unique part."""
    env = os.environ if environ is None else environ
    root = env.get(ENV_UID_ROOT, "").strip().rstrip(".")
    if not root:
        return None
    if len(root) > 40 or not _UID_ROOT.fullmatch(root):
        raise ConfigError(f"{ENV_UID_ROOT} is not a UID root (digits and dots, no leading "
                          "zeros, at most 40 characters)")
    return root


def _quiet_highdicom() -> None:
    # highdicom logs the SOP Instance UIDs of the source images at INFO: identifiers.
    logger = logging.getLogger("highdicom")
    if logger.level < logging.WARNING:
        logger.setLevel(logging.WARNING)


def new_uid(root: str | None) -> str:
    return str(generate_uid(prefix=root + ".")) if root else str(hd.UID())


@dataclass(frozen=True)
class BreastEntry:
    """One measurement group: a variant's probabilities for one breast and its images."""

    variant: str
    side: Side
    probabilities: Probabilities
    sources: tuple[str, ...]  # file names relative to the exam folder


@dataclass(frozen=True)
class SrContent:
    """What the SR says, taken from a result (the one place that knows the result schema)."""

    algorithm: str
    version: str
    parameters: tuple[str, ...]
    entries: tuple[BreastEntry, ...]


def content_from_result(result: PredictionResult) -> SrContent:
    """The mapping from the result schema to the SR (adapt here when the schema changes)."""
    variants = [result.primary_variant,
                *sorted(v for v in result.predictions if v != result.primary_variant)]
    by_side: dict[Side, list[str]] = {Side.LEFT: [], Side.RIGHT: []}
    for view_name, images in sorted(result.views.items()):
        side = Side.LEFT if view_name.startswith("L") else Side.RIGHT
        by_side[side].extend(image.source for image in images)
    entries = []
    for variant in variants:
        breasts = result.predictions[variant]
        for side, probabilities in ((Side.LEFT, breasts.left), (Side.RIGHT, breasts.right)):
            entries.append(BreastEntry(variant, side, probabilities,
                                       tuple(dict.fromkeys(by_side[side]))))
    parameters = (f"primary_variant={result.primary_variant.value}",
                  *(f"weights {w.name} sha256={w.sha256}" for w in result.weights))
    return SrContent(algorithm=f"mammocli {result.family.value} {result.model.value}",
                     version=result.mammocli_version or __version__,
                     parameters=parameters, entries=tuple(entries))


def _side_name(side: Side) -> str:
    return "left" if side is Side.LEFT else "right"


def build_sr(result: PredictionResult, sources: Mapping[str, Dataset], *,
             uid_root: str | None = None, series_number: int = SERIES_NUMBER) -> Dataset:
    """The Comprehensive SR of one exam's result. `sources`: the header (pixel data not needed)
    of every image the result names, by its file name relative to the exam folder (see
    `read_source_headers`; a DICOMweb study carries them as `RetrievedStudy.headers`)."""
    _quiet_highdicom()
    content = content_from_result(result)
    names = sorted({name for e in content.entries for name in e.sources})
    missing = [n for n in names if n not in sources]
    if missing:
        raise InputError(f"{missing[0]}: no DICOM header for this image of the result; a DICOM "
                         "SR can only be made for DICOM input",
                         hint="run predict on DICOM files to get DICOM outputs")
    evidence = [_with_type2(sources[n]) for n in names]
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=str(generate_uid(entropy_srcs=["mammocli device observer"])),
            name="mammocli", manufacturer_name=MANUFACTURER, model_name=content.algorithm))
    groups = []
    for entry in content.entries:
        algorithm = hd.sr.AlgorithmIdentification(
            name=content.algorithm, version=content.version,
            parameters=[f"variant={entry.variant}", *content.parameters])
        site = hd.sr.FindingSite(anatomic_location=BREAST, laterality=LATERALITY[entry.side])
        measurements = [
            hd.sr.Measurement(name=code, value=float(value), unit=UNIT, algorithm_id=algorithm)
            for code, value in ((MALIGNANT, entry.probabilities.malignant),
                                (BENIGN, entry.probabilities.benign))]
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=new_uid(uid_root),
                identifier=f"{entry.variant}: {_side_name(entry.side)} breast"),
            algorithm_id=algorithm,
            finding_sites=[site],
            measurements=measurements,
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(sources[n])
                           for n in entry.sources]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=SCREENING, imaging_measurements=groups)
    # No image library (TID 1600): its descriptors need ImagerPixelSpacing, which not every
    # export keeps; the groups reference their images and the evidence sequence lists them all.
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence, content=report[0], series_instance_uid=new_uid(uid_root),
        series_number=series_number, sop_instance_uid=new_uid(uid_root), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, series_description=SERIES_DESCRIPTION)
    for keyword in _ALSO_COPIED:
        if keyword in evidence[0]:
            setattr(sr, keyword, evidence[0].get(keyword))
    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = "mammocli project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


# Type 2 in the Patient and General Study modules: highdicom copies them from the first source
# image and needs them present; an export that dropped one gets it empty (which is conformant).
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
          "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")
# Optional attributes of the same modules that a viewer shows with the study.
_ALSO_COPIED = ("IssuerOfPatientID", "StudyDescription")


def _with_type2(ds: Dataset) -> Dataset:
    missing = [k for k in _TYPE2 if k not in ds]
    if not missing:
        return ds
    copy = deepcopy(ds)  # a header: small; the caller's dataset stays as it was
    for keyword in missing:
        setattr(copy, keyword, None)
    return copy


def read_source_headers(folder: Path, names: Iterable[str]) -> dict[str, Dataset]:
    """The headers of files of an exam folder (pixel data not read), by relative name."""
    import pydicom

    headers: dict[str, Dataset] = {}
    for name in names:
        try:
            headers[name] = pydicom.dcmread(Path(folder) / name, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - named, not shown: the file is the user's
            raise InputError(f"{name}: cannot read the DICOM header for the SR "
                             f"({type(exc).__name__})") from exc
    return headers


def sr_bytes(sr: Dataset) -> bytes:
    buffer = BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_sr(sr: Dataset, folder: Path, exam_id: str) -> Path:
    """`<folder>/<exam_id>.sr.dcm`, written atomically; `exam_id` is a safe file name."""
    path = Path(folder) / f"{exam_id}.sr.dcm"
    atomic_write_bytes(path, sr_bytes(sr))
    return path


def read_sr_probabilities(sr: Dataset) -> dict[str, dict[Side, Probabilities]]:
    """Back from an SR made by `build_sr`: variant -> breast -> probabilities (for checks and
    for readers of the PACS output)."""
    parsed = _report(sr)
    result: dict[str, dict[Side, Probabilities]] = {}
    for group in parsed.get_image_measurement_groups():
        variant, _, _ = str(group.tracking_identifier).partition(": ")
        side = _group_side(group)
        values = {}
        for code in (MALIGNANT, BENIGN):
            found = group.get_measurements(name=code)
            if found:
                values[code.value] = float(found[0].value)
        result.setdefault(variant, {})[side] = Probabilities(
            malignant=values[MALIGNANT.value], benign=values[BENIGN.value])
    return result


def referenced_instances(sr: Dataset) -> dict[tuple[str, Side], set[str]]:
    """(variant, breast) -> the SOP Instance UIDs its measurement group references."""
    parsed = _report(sr)
    refs: dict[tuple[str, Side], set[str]] = {}
    for group in parsed.get_image_measurement_groups():
        variant = str(group.tracking_identifier).partition(": ")[0]
        refs[(variant, _group_side(group))] = {
            str(s.referenced_sop_instance_uid) for s in group.source_images}
    return refs


def _report(sr: Dataset) -> hd.sr.MeasurementReport:
    content = hd.sr.ComprehensiveSR.from_dataset(sr, copy=True).content
    if not isinstance(content, hd.sr.MeasurementReport):
        raise InputError("the SR is not a TID 1500 measurement report")
    return content


def _group_side(group: hd.sr.MeasurementsAndQualitativeEvaluations) -> Side:
    site = group.finding_sites[0]
    code = site.laterality.value if site.laterality is not None else ""
    for side, expected in LATERALITY.items():
        if code == expected.value:
            return side
    raise InputError("the SR has a measurement group without left/right laterality")
