"""Real-archive shapes (issue 12): digitised-film archives with one study per image, grouping
(--group-by), why files were not used, strict decoding, hostile header values and UIDs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from dicom_factory import (
    make_film,
    make_mg,
    save_mg,
    save_with_text,
    with_unknown_vr,
    write_exam,
    write_film_exam,
)
from pydicom.uid import JPEG2000Lossless, RLELossless, generate_uid
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.errors import InputError, MammocliError
from mammocli.io.dicom.discover import is_valid_uid
from mammocli.io.dicom.options import DicomOptions, GroupBy, VoiMode
from mammocli.io.discover import discover_exams
from mammocli.io.exam import ExamSource
from mammocli.io.load import read_view_image
from mammocli.preprocess.prepare import check_usable
from mammocli.views import VIEWS

SC = DicomOptions(allow_secondary_capture=True)


def film_root(root: Path, names: str | None = None) -> Path:
    write_film_exam(root / "exam1", patient="P_00001", names=names)
    write_film_exam(root / "exam2", patient="P_00002", seed=5, names=names)
    return root


def all_text(exams: list[ExamSource]) -> str:
    return "\n".join([e.exam_id for e in exams] + [w for e in exams for w in e.warnings]
                     + [s.reason for e in exams for s in e.skipped])


def failure(folder: Path, options: DicomOptions | None = None) -> MammocliError:
    """The error a run of the one exam in `folder` ends with (discovery, check, decoding)."""
    options = options or DicomOptions()
    try:
        [exam] = discover_exams(folder, options=options)
        check_usable(exam)
        for view in VIEWS:
            for source in exam.images[view]:
                read_view_image(source, dicom=options)
    except MammocliError as exc:
        return exc
    raise AssertionError(f"{folder.name}: the exam was read without an error")


# ---- grouping -----------------------------------------------------------------------------


def test_film_archive_folder_is_the_exam_without_flags(tmp_path: Path) -> None:
    root = film_root(tmp_path / "root")
    exams = discover_exams(root, options=SC)
    assert [e.exam_id for e in exams] == ["exam1", "exam2"]
    for exam in exams:
        assert exam.missing_views == [] and exam.folder.parent == root
        assert any("grouped by folder" in w and "--group-by study" in w for w in exam.warnings)
    # Each view comes from the right folder's file (the view only in PatientID).
    lcc = exams[1].images[VIEWS[0]][0]
    assert lcc.relative.startswith("Mass-Test_P_00002_LEFT_CC/")
    assert str(pydicom.dcmread(lcc.path).PatientID).endswith("P_00002_LEFT_CC")
    flat = discover_exams(film_root(tmp_path / "flat", names="IM{i}"), options=SC)
    assert [e.exam_id for e in flat] == ["exam1", "exam2"]
    assert "P_0000" not in all_text(flat)  # PatientID parsed for the view, never shown


def test_film_archive_without_the_flag_names_it_per_file(tmp_path: Path) -> None:
    exams = discover_exams(film_root(tmp_path / "root"))
    assert [e.exam_id for e in exams] == ["exam1", "exam2"]
    for exam in exams:
        assert len(exam.skipped) == 4
        assert {s.admit_with for s in exam.skipped} == {"--allow-secondary-capture"}
        assert all("secondary capture" in s.reason for s in exam.skipped)
        with pytest.raises(InputError) as caught:
            check_usable(exam)
        message = str(caught.value)
        assert "admit with --allow-secondary-capture" in message
        assert message.count("1-1.dcm: secondary capture") == 4
        assert "PNG" not in message and "L_CC.png" not in message


def test_group_by_study_keeps_one_exam_per_study(tmp_path: Path) -> None:
    exams = discover_exams(film_root(tmp_path / "root"),
                           options=DicomOptions(allow_secondary_capture=True,
                                                group_by=GroupBy.STUDY))
    assert len(exams) == 8 and all(len(e.missing_views) == 3 for e in exams)
    assert not any("grouped" in w for e in exams for w in e.warnings)


def test_auto_stays_per_study_for_pacs_exports(tmp_path: Path) -> None:
    # A patient folder holding a prior and a current study: two exams, never merged.
    patient = tmp_path / "root" / "patient"
    write_exam(patient, names="prior_{lat}_{view}.dcm")
    write_exam(patient, names="current_{lat}_{view}.dcm", seed=9)
    exams = discover_exams(tmp_path / "root")
    assert len(exams) == 2 and all(e.missing_views == [] for e in exams)
    assert all(e.exam_id.startswith("study-") for e in exams)
    assert not any("grouped" in w for e in exams for w in e.warnings)


def test_auto_merges_only_one_set_of_one_patient(tmp_path: Path) -> None:
    # Two patients' per-image studies in one folder: ambiguous, so no merge.
    mixed = tmp_path / "mixed"
    for i, (lat, view) in enumerate((("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))):
        patient = "P_00001" if i < 2 else "P_00002"
        save_mg(make_film(lat, view, patient=patient, seed=i), mixed / f"{i}.dcm")
    assert len(discover_exams(mixed, options=SC)) == 4
    # One patient but two images of a view: not exactly one four-view set, no merge.
    double = tmp_path / "double"
    write_film_exam(double)
    save_mg(make_film("L", "CC", seed=7), double / "again.dcm")
    assert len(discover_exams(double, options=SC)) == 5
    # A broken file of the set still belongs to it: the folder's exam names it.
    broken = tmp_path / "exam1"
    paths = write_film_exam(broken)
    data = paths["L-MLO"].read_bytes()
    paths["L-MLO"].write_bytes(data[: len(data) // 2])
    [exam] = discover_exams(broken, options=SC)
    assert exam.exam_id == "exam1" and exam.missing_views == [VIEWS[2]]
    with pytest.raises(InputError, match=r"LEFT_MLO/.*1-1\.dcm: pixel data truncated"):
        check_usable(exam)


def test_group_by_folder_and_patient(tmp_path: Path) -> None:
    root = film_root(tmp_path / "root", names="IM{i}")
    by_folder = discover_exams(root, options=DicomOptions(allow_secondary_capture=True,
                                                          group_by=GroupBy.FOLDER))
    assert [e.exam_id for e in by_folder] == ["exam1", "exam2"]
    assert all(e.missing_views == [] and e.problem is None for e in by_folder)
    assert all(any("--group-by folder" in w for w in e.warnings) for e in by_folder)
    # Two patients in one folder are never one exam.
    shutil.move(str(root / "exam2"), str(root / "exam1" / "other"))
    [mixed] = discover_exams(root, options=DicomOptions(allow_secondary_capture=True,
                                                        group_by=GroupBy.FOLDER))
    assert mixed.problem is not None and "2 patients" in mixed.problem.message
    with pytest.raises(InputError, match="2 patients"):
        check_usable(mixed)
    # By patient: the two sets are told apart by PatientID, whose value is never shown.
    by_patient = discover_exams(root, options=DicomOptions(allow_secondary_capture=True,
                                                           group_by=GroupBy.PATIENT))
    assert len(by_patient) == 2 and all(e.missing_views == [] for e in by_patient)
    ids = {e.exam_id for e in by_patient}
    assert "other" in ids  # a folder holding one patient alone names the exam
    [hashed] = ids - {"other"}
    assert hashed.startswith("patient-") and len(hashed) == len("patient-") + 8
    assert "P_0000" not in all_text(by_patient) + all_text(by_folder)


# ---- exam ids from UIDs -------------------------------------------------------------------


def test_invalid_study_uid_never_becomes_an_exam_id(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    hostile = "../../ESCAPED_OUT"
    ds, _ = make_mg("L", "CC")
    save_with_text(ds, folder / "a.dcm", {"StudyInstanceUID": hostile})
    good_uid = generate_uid()
    save_mg(make_mg("R", "CC", study_uid=good_uid)[0], folder / "b.dcm")
    exams = discover_exams(folder, options=DicomOptions(include_uids=True))
    ids = {e.exam_id for e in exams}
    assert good_uid in ids and not any("ESCAPED" in i or "/" in i for i in ids)
    [bad] = [e for e in exams if e.exam_id != good_uid]
    assert bad.exam_id.startswith("study-")
    assert any("not a valid UID" in w for w in bad.warnings)
    assert not any(hostile in w for w in bad.warnings)
    assert is_valid_uid(good_uid) and not is_valid_uid("1.2." + "3" * 70)
    assert not is_valid_uid("1.2.3 ") and not is_valid_uid("")


# ---- broken files: which file, and why ----------------------------------------------------


def _variants(tmp_path: Path, uid: str) -> dict[str, bytes]:
    """Broken L-CC files: cut at offsets through header, pixel header and data, plain and RLE;
    sizes and depths that contradict the data, plain and compressed; a huge declared size."""
    plain = save_mg(make_mg("L", "CC", study_uid=uid)[0], tmp_path / "p.dcm").read_bytes()
    rle = save_mg(make_mg("L", "CC", study_uid=uid)[0], tmp_path / "r.dcm",
                  RLELossless).read_bytes()
    j2k = save_mg(make_mg("L", "CC", study_uid=uid)[0], tmp_path / "j.dcm", JPEG2000Lossless)
    out: dict[str, bytes] = {}
    for cut in (60, 131, 200, 600, 1000, len(plain) // 2, len(plain) - 1):
        out[f"plain_cut_{cut}"] = plain[:cut]
    for cut in (1200, len(rle) // 2, len(rle) - 9, len(rle) - 3):
        out[f"rle_cut_{cut}"] = rle[:cut]

    def edited(source: Path, **values: int) -> bytes:
        ds = pydicom.dcmread(source)
        for key, value in values.items():
            setattr(ds, key, value)
        ds.save_as(tmp_path / "edited.dcm")
        return (tmp_path / "edited.dcm").read_bytes()

    out["plain_rows"] = edited(tmp_path / "p.dcm", Rows=150)
    out["plain_bits8"] = edited(tmp_path / "p.dcm", BitsAllocated=8, BitsStored=8, HighBit=7)
    out["plain_huge"] = edited(tmp_path / "p.dcm", Rows=60000, Columns=60000)
    out["rle_rows_fewer"] = edited(tmp_path / "r.dcm", Rows=150)
    out["rle_rows_more"] = edited(tmp_path / "r.dcm", Rows=600)
    out["rle_bits8"] = edited(tmp_path / "r.dcm", BitsAllocated=8, BitsStored=8, HighBit=7)
    out["rle_huge"] = edited(tmp_path / "r.dcm", Rows=60000, Columns=60000)
    out["j2k_rows"] = edited(j2k, Rows=150)
    out["j2k_bits8"] = edited(j2k, BitsAllocated=8, BitsStored=8, HighBit=7)
    ds, _ = make_mg("L", "CC", study_uid=uid)
    del ds.PixelData
    out["no_pixels"] = save_mg(ds, tmp_path / "n.dcm").read_bytes()
    return out


def test_every_broken_file_fails_its_exam_naming_it(tmp_path: Path) -> None:
    uid = generate_uid()
    base = tmp_path / "base"
    write_exam(base, study_uid=uid)
    for name, data in _variants(tmp_path, uid).items():
        folder = tmp_path / name
        shutil.copytree(base, folder)
        (folder / "L_CC.dcm").write_bytes(data)
        exc = failure(folder)
        text = str(exc)
        assert isinstance(exc, InputError), name
        assert "L_CC.dcm: " in text, (name, text)
        assert "PNG" not in text and ".png" not in text, (name, text)
        assert any(word in text for word in (
            "truncated", "cut short", "no PixelData", "inconsistent", "exceeds the limit",
            "do not decode")), (name, text)
        assert "SYN" not in text and uid not in text, (name, text)


def test_header_text_in_numbers_is_named_never_echoed(tmp_path: Path) -> None:
    uid = generate_uid()
    base = tmp_path / "base"
    write_exam(base, study_uid=uid)
    name = "DOE^JANE"
    for keyword, tag in (("RescaleSlope", "(0028,1053)"), ("WindowCenter", "(0028,1050)"),
                         ("RescaleIntercept", "(0028,1052)"), ("NumberOfFrames", "(0028,0008)")):
        folder = tmp_path / keyword
        shutil.copytree(base, folder)
        ds, _ = make_mg("L", "CC", study_uid=uid, window=(2048, 4096, "LINEAR"))
        save_with_text(ds, folder / "L_CC.dcm", {keyword: name})
        text = str(failure(folder, DicomOptions(voi=VoiMode.WINDOW)))
        assert f"L_CC.dcm: the DICOM header element {tag} ({keyword})" in text, text
        assert "not a number" in text and "DOE" not in text and "JANE" not in text
    # A sort key holding text does not reject the image.
    folder = tmp_path / "instance"
    shutil.copytree(base, folder)
    save_with_text(make_mg("L", "CC", study_uid=uid)[0], folder / "L_CC.dcm",
                   {"InstanceNumber": name})
    [exam] = discover_exams(folder)
    assert exam.missing_views == []
    assert read_view_image(exam.images[VIEWS[0]][0]).pixels.shape == (300, 200)


def test_unknown_vr_rejects_that_file_only(tmp_path: Path) -> None:
    uid = generate_uid()
    root = tmp_path / "root"
    for i in range(3):  # a batch of studies: one mutated file must not end it
        write_exam(root / f"s{i}", study_uid=uid if i == 0 else None)
    with_unknown_vr(root / "s1" / "L_CC.dcm", 0x0020, 0x0062)  # ImageLaterality
    with_unknown_vr(root / "s2" / "R_CC.dcm", 0x0010, 0x0010)  # PatientName: not read
    exams = {e.exam_id: e for e in discover_exams(root)}
    assert exams["s0"].missing_views == [] and exams["s2"].missing_views == []
    reason = {s.relative: s.reason for s in exams["s1"].skipped}["L_CC.dcm"]
    assert reason == ("the DICOM header element (0020,0062) (ImageLaterality) cannot be read: "
                      "unknown value representation (VR)")
    assert read_view_image(exams["s2"].images[VIEWS[1]][0]).pixels.shape == (300, 200)


# ---- end to end ---------------------------------------------------------------------------


def test_film_archive_predict_end_to_end(tmp_path: Path, random_weights: Path,
                                         small_pipeline: Path) -> None:
    root = film_root(tmp_path / "root")
    runner = CliRunner()
    args = ["predict", str(root), "--weights-dir", str(random_weights), "--pipeline-config",
            str(small_pipeline), "--variants", "image-only", "--tta", "0", "--quiet"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 3, refused.output
    records = [json.loads(line) for line in refused.stdout.splitlines() if line.strip()]
    assert [r["exam_id"] for r in records] == ["exam1", "exam2"]
    assert all(r["status"] == "failed" and "--allow-secondary-capture" in r["error"]
               for r in records)
    assert refused.stderr.count("--allow-secondary-capture") >= 2
    used = runner.invoke(app, [*args, "--allow-secondary-capture"])
    assert used.exit_code == 0, used.output
    results = [json.loads(line) for line in used.stdout.splitlines() if line.strip()]
    assert [r["exam_id"] for r in results] == ["exam1", "exam2"]
    assert all(0 <= r["predictions"]["image_only"]["left"]["malignant"] <= 1 for r in results)
    assert all(any("grouped by folder" in w for w in r["warnings"]) for r in results)
    per_study = runner.invoke(app, [*args, "--allow-secondary-capture", "--group-by", "study"])
    assert per_study.exit_code == 3
    assert len([ln for ln in per_study.stdout.splitlines() if ln.strip()]) == 8
    for out in (refused, used, per_study):
        assert "SYNTHETIC" not in out.output
