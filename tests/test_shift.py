"""Shift report: per-subgroup AUROC and score distributions with warnings when a subgroup
differs from the rest; the header allow-list; the forest plot."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from mammocli.analysis.evaluation import evaluate
from mammocli.analysis.predictions import load_predictions
from mammocli.analysis.shift import (
    ALLOWED_FIELDS,
    exam_header,
    forest_figure,
    forest_png,
    header_fields,
    shift_from_evaluated,
    shift_report,
    subgroup_columns,
)
from mammocli.analysis.tables import Columns, read_labels
from mammocli.errors import InputError
from tests.dicom_factory import make_mg


def _site(shifted: bool, n: int = 1500, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray, dict[str, list[str]]]:
    """Three scanners; with `shifted`, the minority "Vendor C" (20%) gives lower scores to every
    exam and separates cancers less (the BCC#13/#19 complaint)."""
    rng = np.random.default_rng(seed)
    vendor = rng.choice(["Vendor A", "Vendor B", "Vendor C"], size=n, p=[0.45, 0.35, 0.2])
    y = (rng.random(n) < 0.15).astype(np.int64)
    z = rng.normal(-2.0 + 1.8 * y, 1.0)
    if shifted:
        c = vendor == "Vendor C"
        z[c] = rng.normal(-3.2 + 0.5 * y[c], 1.0)
    return y, 1 / (1 + np.exp(-z)), {"Manufacturer": vendor.tolist()}


def test_a_shifted_scanner_is_flagged_alone() -> None:
    y, s, cols = _site(shifted=True)
    rep = shift_report(y, s, cols, n_bootstrap=500, seed=0)
    by = {g.value: g for g in rep.subgroups}
    c = by["Vendor C"]
    assert c.auroc_differs and c.scores_differ
    assert c.auroc_difference is not None and c.auroc_difference.ci_high is not None
    assert c.auroc_difference.ci_high < 0  # lower than the rest
    assert c.higher_than_rest is not None and c.higher_than_rest < 0.3
    assert not (by["Vendor A"].auroc_differs or by["Vendor A"].scores_differ)
    assert not (by["Vendor B"].auroc_differs or by["Vendor B"].scores_differ)
    assert len(rep.warnings) == 2 and all(w.startswith("Manufacturer = Vendor C: ")
                                          for w in rep.warnings)
    assert "AUROC" in rep.warnings[0] and "lower than the other exams'" in rep.warnings[0]
    assert "scores of non-malignant exams run lower" in rep.warnings[1]
    # 3 subgroups x 2 tests, Bonferroni
    assert rep.n_comparisons == 6 and rep.corrected_level == pytest.approx(1 - 0.05 / 6)
    assert c.n == cols["Manufacturer"].count("Vendor C") and c.n_positive == int(
        y[np.array(cols["Manufacturer"]) == "Vendor C"].sum())
    assert c.negative_scores is not None and c.rest_negative_scores is not None
    assert c.negative_scores.median < c.rest_negative_scores.median


def test_a_homogeneous_site_raises_no_warning() -> None:
    for seed in range(3):
        y, s, cols = _site(shifted=False, seed=seed)
        rep = shift_report(y, s, cols, n_bootstrap=500, seed=seed)
        assert rep.warnings == []
        assert not any(g.auroc_differs or g.scores_differ for g in rep.subgroups)
        assert all(g.auroc is not None and g.distribution_p is not None for g in rep.subgroups)


def test_scores_shifted_but_ranking_kept_warns_on_scores_only() -> None:
    # a scanner whose scores are all lower (calibration), but rank cancers as well as the rest
    y, s, cols = _site(shifted=False, n=2000, seed=5)
    c = np.array(cols["Manufacturer"]) == "Vendor C"
    s = s.copy()
    s[c] = s[c] ** 2  # monotone: same AUROC within the subgroup
    rep = shift_report(y, s, cols, n_bootstrap=400)
    g = {r.value: r for r in rep.subgroups}["Vendor C"]
    assert g.scores_differ and not g.auroc_differs
    assert [w for w in rep.warnings if "AUROC" in w] == []


def test_small_and_one_class_subgroups_are_summarised_not_tested() -> None:
    y, s, cols = _site(shifted=False, n=600)
    values = cols["Manufacturer"]
    negatives = [i for i in range(len(y)) if y[i] == 0]
    for i in negatives[:5]:
        values[i] = "Rare"  # 5 non-malignant exams: too few for either test
    rep = shift_report(y, s, {"Manufacturer": values}, n_bootstrap=100)
    rare = {g.value: g for g in rep.subgroups}["Rare"]
    assert rare.auroc is None and rare.distribution_p is None and not rare.scores_differ
    assert rare.note == ("one class only: no AUROC; fewer than 10 non-malignant exams here or "
                         "in the other exams: scores not compared")
    one_value = shift_report(y, s, {"Manufacturer": ["A"] * len(y)}, n_bootstrap=50)
    assert one_value.subgroups[0].note == "every exam has this value: nothing to compare with"
    assert one_value.warnings == []
    with pytest.raises(InputError, match="column 'KVP' has 3 values for 600 exams"):
        shift_report(y, s, {"KVP": ["1", "2", "3"]}, n_bootstrap=0)


def test_forest_plot_has_a_row_per_subgroup_and_marks_the_flagged_one() -> None:
    y, s, cols = _site(shifted=True)
    rep = shift_report(y, s, cols, n_bootstrap=200)
    fig = forest_figure(rep)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0].startswith("Manufacturer = Vendor A  (n=")
    assert len(labels) == 3
    reds = {ln.get_color() for ln in fig.axes[0].get_lines() if ln.get_color() == "tab:red"}
    assert reds == {"tab:red"}
    png = Image.open(io.BytesIO(forest_png(rep)))
    assert png.format == "PNG"


# --- header fields ---------------------------------------------------------------------------

IDENTIFYING = {
    "PatientName": "Doe^Jane", "PatientID": "PID-778812", "PatientBirthDate": "19610203",
    "StudyDate": "20240317", "AccessionNumber": "ACC99231", "InstitutionName": "St Example Clinic",
    "StationName": "MAMMO-ROOM-3", "DeviceSerialNumber": "SN-4471", "OperatorsName": "Tech^Tom",
    "ReferringPhysicianName": "Dr^Who", "StudyDescription": "screening Jane",
}


def test_header_fields_take_the_allow_list_and_nothing_identifying() -> None:
    ds, _ = make_mg()
    for k, v in IDENTIFYING.items():
        setattr(ds, k, v)
    ds.Manufacturer = "  HOLOGIC, Inc. "
    ds.ManufacturerModelName = "Selenia Dimensions"
    ds.SoftwareVersions = ["AWS:MAMMODROC_3_4_1_8", "PXCM:1.4.0.7"]
    ds.ImagerPixelSpacing = [0.065, 0.065]
    ds.KVP = "29"
    ds.Exposure = 120
    ds.BodyPartThickness = ""  # empty: absent
    got = header_fields(ds)
    assert set(got) <= set(ALLOWED_FIELDS)
    assert got["Manufacturer"] == "HOLOGIC, Inc."
    assert got["ManufacturerModelName"] == "Selenia Dimensions"
    assert got["SoftwareVersions"] == "AWS:MAMMODROC_3_4_1_8\\PXCM:1.4.0.7"
    assert got["ImagerPixelSpacing"] == 0.065 and got["KVP"] == 29.0 and got["Exposure"] == 120.0
    assert got["Rows"] == 300.0 and got["Columns"] == 200.0 and got["ImageSize"] == "300x200"
    assert "BodyPartThickness" not in got
    text = repr(got)
    for value in IDENTIFYING.values():
        assert value not in text
    assert str(ds.StudyInstanceUID) not in text and str(ds.SOPInstanceUID) not in text


def test_header_fields_skip_malformed_values() -> None:
    ds = Dataset()
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    # KVP as some archives hold it: converted (and failing) only when read
    ds[0x00180060] = RawDataElement(Tag(0x00180060), "DS", 12, b"not a number", 0, True, True)
    got = header_fields(ds)
    assert got == {"Manufacturer": "GE MEDICAL SYSTEMS"}
    assert header_fields(Dataset()) == {}


def test_exam_header_and_subgroup_columns() -> None:
    views = [{"Manufacturer": "A", "KVP": 28.0, "ImageSize": "4096x3328"},
             {"Manufacturer": "A", "KVP": 31.0, "ImageSize": "4096x3328"},
             {"Manufacturer": "A", "KVP": 30.0, "ImageSize": "3328x2560"}]
    exam = exam_header(views)
    assert exam == {"Manufacturer": "A", "KVP": 30.0, "ImageSize": "mixed"}
    cols = subgroup_columns([exam, {"Manufacturer": "B", "KVP": 25.0}, {}],
                            fields=["Manufacturer", "KVP", "PixelSpacing"])
    assert cols == {"Manufacturer": ["A", "B", "missing"],
                    "KVP": ["30-32", "<26", "missing"],
                    "PixelSpacing": ["missing", "missing", "missing"]}
    assert subgroup_columns([{"Rows": 4096.0}], edges={})["Rows"] == ["4096"]


def test_shift_from_an_evaluation_of_the_reader_study(reader_study_csv: Path) -> None:
    """Wiring of `evaluate --by-header`: exam-level scores of the evaluation, headers per exam."""
    preds = load_predictions(reader_study_csv, Columns(exam="case_ID", model="AI_DMVCNN_POM",
                                                       exam_explicit=True))
    labels = read_labels(reader_study_csv, Columns(exam="case_ID", exam_explicit=True))
    ev = evaluate(preds, labels, n_bootstrap=200, seed=0)
    exams = sorted({k[0] for k in ev.keys})
    # a made-up split of the public exams into two scanners (no real shift)
    headers = {e: {"Manufacturer": "A" if i % 2 else "B"} for i, e in enumerate(exams)}
    rep = shift_from_evaluated(ev, headers, fields=["Manufacturer"])
    assert rep.n == 720 and rep.n_positive == 60 and rep.level == "exam"
    assert rep.auroc == ev.report.exam_level["malignant"].auroc  # same resamples as evaluate
    assert [g.n for g in rep.subgroups] == [360, 360]
    assert rep.warnings == []
