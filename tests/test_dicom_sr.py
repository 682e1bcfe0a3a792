"""The DICOM SR (TID 1500) of a result: content, codes, UIDs, references (issue 15)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from dicom_factory import write_exam

from mammocli.errors import ConfigError, InputError
from mammocli.outputs.dicom_sr import (
    BENIGN,
    LATERALITY,
    MALIGNANT,
    SCHEME,
    build_sr,
    read_source_headers,
    read_sr_probabilities,
    referenced_instances,
    uid_root_from_environment,
    write_sr,
)
from mammocli.outputs.schema import (
    BreastPredictions,
    ImageReport,
    PredictionResult,
    Probabilities,
    WeightsUsed,
)
from mammocli.views import Side


def make_result(files: dict[str, Path]) -> PredictionResult:
    views = {view: [ImageReport(source=path.name, crop_window=(0, 10, 0, 10), flipped=False,
                                orientation_from="dicom", best_center=(5, 5),
                                distance_from_starting_side=0)]
             for view, path in files.items()}

    def breasts(scale: float) -> BreastPredictions:
        return BreastPredictions(
            left=Probabilities(benign=0.3141592653589793 * scale, malignant=0.0271828 * scale),
            right=Probabilities(benign=0.123456789 * scale, malignant=0.987654321 * scale))

    return PredictionResult(
        exam_id="exam1", family="dmv-cnn", model="view-wise", views=views,
        predictions={"image_only": breasts(0.5), "image_and_heatmaps": breasts(1.0)},
        primary_variant="image_and_heatmaps", device="cpu", seed=0, rng_mode="exam", tta=1,
        duration_s=1.0, mammocli_version="0.1.0",
        weights=[WeightsUsed(name="ImageOnly__ModeImage_weights.p", sha256="a" * 64),
                 WeightsUsed(name="sample_patch_model.p", sha256="b" * 64)])


@pytest.fixture()
def exam(tmp_path: Path) -> tuple[dict[str, Path], PredictionResult]:
    files = write_exam(tmp_path / "exam")
    return files, make_result(files)


def sop(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_sr_gives_back_every_probability_and_references_each_breasts_images(
        exam, tmp_path: Path) -> None:
    files, result = exam
    headers = read_source_headers(tmp_path / "exam", [p.name for p in files.values()])
    path = write_sr(build_sr(result, headers), tmp_path / "out", result.exam_id)
    assert path.name == "exam1.sr.dcm"
    back = pydicom.dcmread(path)
    values = read_sr_probabilities(back)
    for variant, breasts in result.predictions.items():
        assert values[variant][Side.LEFT] == breasts.left  # exact: the float is stored too
        assert values[variant][Side.RIGHT] == breasts.right
    refs = referenced_instances(back)
    for variant in result.predictions:
        assert refs[(variant, Side.LEFT)] == {sop(files["L-CC"]), sop(files["L-MLO"])}
        assert refs[(variant, Side.RIGHT)] == {sop(files["R-CC"]), sop(files["R-MLO"])}


def test_sr_codes_algorithm_and_series(exam, tmp_path: Path) -> None:
    files, result = exam
    headers = read_source_headers(tmp_path / "exam", [p.name for p in files.values()])
    sr = build_sr(result, headers)
    source = headers["L_CC.dcm"]
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.StudyInstanceUID == source.StudyInstanceUID  # in the source study
    assert sr.SeriesInstanceUID not in {h.SeriesInstanceUID for h in headers.values()}
    assert "RESEARCH USE ONLY" in sr.SeriesDescription
    assert (sr.PatientName, sr.PatientID) == (source.PatientName, source.PatientID)
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == SCHEME
    report = hd.sr.ComprehensiveSR.from_dataset(sr).content
    assert isinstance(report, hd.sr.MeasurementReport)  # TID 1500
    groups = report.get_image_measurement_groups()
    assert len(groups) == 4  # 2 variants x 2 breasts
    first = groups[0]
    assert str(first.tracking_identifier) == "image_and_heatmaps: left breast"  # primary first
    site = first.finding_sites[0]
    assert (site.value.value, site.value.scheme_designator) == ("76752008", "SCT")
    assert site.laterality is not None and site.laterality.value == LATERALITY[Side.LEFT].value
    names = {m.name.value for m in first.get_measurements()}
    assert names == {MALIGNANT.value, BENIGN.value}
    text = "\n".join(str(e.value) for e in sr.iterall() if e.VR in {"UT", "LO", "ST"})
    assert "mammocli dmv-cnn view-wise" in text and "0.1.0" in text
    assert f"weights sample_patch_model.p sha256={'b' * 64}" in text
    assert "variant=image_only" in text and "primary_variant=image_and_heatmaps" in text


def test_uid_root_is_configurable(exam, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files, result = exam
    headers = read_source_headers(tmp_path / "exam", [p.name for p in files.values()])
    monkeypatch.setenv("MAMMOCLI_UID_ROOT", "1.2.826.0.1.3680043.10.999")
    root = uid_root_from_environment()
    sr = build_sr(result, headers, uid_root=root)
    assert sr.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.999.")
    assert sr.SeriesInstanceUID.startswith("1.2.826.0.1.3680043.10.999.")
    assert len(sr.SOPInstanceUID) <= 64
    for bad in ("1.2.03", "abc", "1." * 30):
        with pytest.raises(ConfigError, match="MAMMOCLI_UID_ROOT"):
            uid_root_from_environment({"MAMMOCLI_UID_ROOT": bad})
    assert uid_root_from_environment({}) is None


def test_sr_needs_the_header_of_every_image(exam, tmp_path: Path) -> None:
    files, result = exam
    headers = read_source_headers(tmp_path / "exam", [p.name for p in files.values()])
    del headers["R_MLO.dcm"]
    with pytest.raises(InputError, match="R_MLO.dcm"):
        build_sr(result, headers)


def test_sr_from_headers_without_optional_patient_fields(exam, tmp_path: Path) -> None:
    files, result = exam
    headers = read_source_headers(tmp_path / "exam", [p.name for p in files.values()])
    for ds in headers.values():  # an export that dropped Type 2 elements
        for keyword in ("PatientName", "StudyID", "AccessionNumber"):
            delattr(ds, keyword)
    sr = build_sr(result, headers)
    assert "PatientName" in sr and not sr.PatientName  # present (Type 2), empty
    assert "PatientName" not in headers["L_CC.dcm"]  # the source headers are not changed


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dcmtk's dsrdump is not installed")
def test_dcmtk_reads_the_sr(exam, tmp_path: Path) -> None:
    files, result = exam
    headers = read_source_headers(tmp_path / "exam", [p.name for p in files.values()])
    path = write_sr(build_sr(result, headers), tmp_path / "out", "exam1")
    run = subprocess.run(["dsrdump", "-Ee", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert "Imaging Measurement Report" in run.stdout
    assert "Probability of malignant finding" in run.stdout
    assert "W: " not in run.stderr and "E: " not in run.stderr, run.stderr
