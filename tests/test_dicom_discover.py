"""DICOM discovery: grouping by study, selection with reasons, bad files, views CSV."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import (
    MG_FOR_PROCESSING,
    make_mg,
    save_mg,
    write_decoys,
    write_exam,
)
from PIL import Image
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless, generate_uid

from mammocli.errors import ConfigError, InputError
from mammocli.io.dicom.options import DicomOptions
from mammocli.io.discover import discover_exams, read_views_csv
from mammocli.io.exam import ExamSource
from mammocli.io.load import read_view_image
from mammocli.views import VIEWS, Side, View


def reasons(exam: ExamSource) -> dict[str, str]:
    return {s.relative: s.reason for s in exam.skipped}


def admitted_by(exam: ExamSource) -> dict[str, str | None]:
    return {s.relative: s.admit_with for s in exam.skipped}


def used(exam: ExamSource) -> dict[View, list[str]]:
    return {v: [s.relative for s in exam.images[v]] for v in VIEWS}


def test_folder_of_dicoms_any_names_nested(tmp_path: Path) -> None:
    exam_dir = tmp_path / "exam1"
    uid = generate_uid()
    write_exam(exam_dir / "series1", study_uid=uid, names="IM{lat}{view}")  # no extension
    [exam] = discover_exams(exam_dir)
    assert exam.exam_id == "exam1" and exam.missing_views == [] and exam.skipped == ()
    assert exam.folder == exam_dir
    source = exam.images[View.L_CC][0]
    assert (source.kind, source.relative, source.facing) == ("dicom", "series1/IMLCC", Side.RIGHT)
    assert exam.images[View.R_MLO][0].facing is Side.LEFT
    assert read_view_image(source).pixels.dtype == np.uint16


def test_root_with_two_studies_and_compressed_syntaxes(tmp_path: Path) -> None:
    first = write_exam(tmp_path / "a")
    second = write_exam(tmp_path / "b", monochrome1=True)
    for syntax, view in ((RLELossless, "L-CC"), (JPEG2000Lossless, "R-CC"),
                         (JPEGLosslessSV1, "L-MLO")):
        from pydicom import dcmread

        ds = dcmread(second[view])
        save_mg(ds, second[view], syntax)
    exams = discover_exams(tmp_path)
    assert [e.exam_id for e in exams] == ["a", "b"]
    assert all(e.missing_views == [] for e in exams)
    a_pixels = read_view_image(exams[0].images[View.L_CC][0]).pixels
    assert a_pixels.shape == (300, 200)
    for view in VIEWS:  # MONOCHROME1 + compressed gives the same image as MONOCHROME2 plain
        np.testing.assert_array_equal(read_view_image(exams[1].images[view][0]).pixels,
                                      read_view_image(exams[0].images[view][0]).pixels)
    assert {v.value: [i.path for i in exams[0].images[v]] for v in VIEWS} == {
        view: [path] for view, path in first.items()}  # each view is the file written for it


def test_two_studies_mixed_in_one_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    uid_a, uid_b = generate_uid(), generate_uid()
    save_mg(make_mg("L", "CC", study_uid=uid_a)[0], folder / "one.dcm")
    save_mg(make_mg("R", "CC", study_uid=uid_b)[0], folder / "two.dcm")
    exams = discover_exams(folder)
    assert len(exams) == 2
    ids = {"study-" + hashlib.sha1(u.encode()).hexdigest()[:8] for u in (uid_a, uid_b)}
    assert {e.exam_id for e in exams} == ids
    assert all(uid_a not in e.exam_id and uid_b not in e.exam_id for e in exams)
    assert sorted(len(e.missing_views) for e in exams) == [3, 3]
    with_uids = discover_exams(folder, options=DicomOptions(include_uids=True))
    assert {e.exam_id for e in with_uids} == {uid_a, uid_b}


def test_selection_rules_and_reasons(tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    uid = generate_uid()
    write_exam(folder, study_uid=uid)
    write_decoys(folder, uid)
    [exam] = discover_exams(folder)
    assert exam.missing_views == []
    assert used(exam)[View.L_CC] == ["L_CC.dcm"]
    why = reasons(exam)
    assert "tomosynthesis" in why["tomo_lcc.dcm"]
    assert "synthesized 2D" in why["cview_lcc.dcm"]
    flags = admitted_by(exam)
    assert flags["cview_lcc.dcm"] == "--allow-synthetic"
    assert flags["raw_lmlo.dcm"] == "--allow-for-processing"
    assert flags["tomo_lcc.dcm"] is None and flags["spot_rcc.dcm"] is None
    assert why["spot_rcc.dcm"] == "spot compression view"
    assert why["mag_rmlo.dcm"] == "magnification view"
    assert "ML view" in why["lml.dcm"]
    assert "FOR PROCESSING" in why["raw_lmlo.dcm"]
    # Allowed kinds still give way to a standard image of the same view.
    [exam] = discover_exams(folder, options=DicomOptions(allow_synthetic=True,
                                                         allow_for_processing=True))
    assert used(exam)[View.L_CC] == ["L_CC.dcm"]
    assert "a preferred image exists for L-CC" in reasons(exam)["cview_lcc.dcm"]


def test_fallback_kinds_fill_an_empty_view_when_allowed(tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    uid = generate_uid()
    paths = write_exam(folder, study_uid=uid)
    paths["L-MLO"].unlink()
    save_mg(make_mg("L", "MLO", study_uid=uid, sop_class=MG_FOR_PROCESSING)[0],
            folder / "raw.dcm")
    [exam] = discover_exams(folder)
    assert exam.missing_views == [View.L_MLO]
    [exam] = discover_exams(folder, options=DicomOptions(allow_for_processing=True))
    assert used(exam)[View.L_MLO] == ["raw.dcm"]
    assert any("FOR PROCESSING" in w for w in exam.warnings)


def test_implant_displaced_only_without_a_standard_view(tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    uid = generate_uid()
    write_exam(folder, study_uid=uid, implant=True)
    save_mg(make_mg("L", "CC", study_uid=uid, modifiers=["implant"], view_position="CC ID",
                    implant=True)[0], folder / "lcc_id.dcm")
    save_mg(make_mg("R", "MLO", study_uid=uid, modifiers=["implant"], implant=True)[0],
            folder / "rmlo_id.dcm")
    (folder / "R_MLO.dcm").unlink()
    [exam] = discover_exams(folder)
    assert used(exam)[View.L_CC] == ["L_CC.dcm"]
    assert "implant-displaced" in reasons(exam)["lcc_id.dcm"]
    assert used(exam)[View.R_MLO] == ["rmlo_id.dcm"]
    assert any("implant" in w for w in exam.warnings)


def test_ties_keep_all_or_latest_with_one_per_view(tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    uid = generate_uid()
    write_exam(folder, study_uid=uid)
    save_mg(make_mg("L", "CC", study_uid=uid, acquisition="20240101130000", seed=9)[0],
            folder / "retake.dcm")
    [exam] = discover_exams(folder)
    assert used(exam)[View.L_CC] == ["L_CC.dcm", "retake.dcm"]
    [exam] = discover_exams(folder, options=DicomOptions(one_per_view=True))
    assert used(exam)[View.L_CC] == ["retake.dcm"]
    assert "--one-per-view" in reasons(exam)["L_CC.dcm"]


def test_view_from_file_name_warns(tmp_path: Path) -> None:
    folder = tmp_path / "cbis"
    uid = generate_uid()
    for lat, view in (("LEFT", "CC"), ("RIGHT", "CC"), ("LEFT", "MLO"), ("RIGHT", "MLO")):
        ds, _ = make_mg(lat[0], None, study_uid=uid, laterality_tag="series", orientation=False)
        save_mg(ds, folder / f"P_00001_{lat}_{view}.dcm")
    [exam] = discover_exams(folder)
    assert exam.missing_views == []
    assert len([w for w in exam.warnings if "file name" in w]) == 4
    assert exam.images[View.L_CC][0].facing is None


def test_views_csv_overrides(tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    uid = generate_uid()
    for i, view in enumerate(VIEWS):
        ds, _ = make_mg(view.side.letter, None, study_uid=uid, orientation=False, seed=i)
        save_mg(ds, folder / f"IMG{i}")
    [exam] = discover_exams(folder)
    assert len(exam.missing_views) == 4 and admitted_by(exam)["IMG0"] == "--views-csv"
    csv = tmp_path / "views.csv"
    csv.write_text("file,view\n" + "".join(f"IMG{i},{v.value}\n" for i, v in enumerate(VIEWS)))
    mapping = read_views_csv(csv)
    [exam] = discover_exams(folder, views=mapping)
    assert exam.missing_views == [] and used(exam)[View.R_MLO] == ["IMG3"]
    [exam] = discover_exams(tmp_path, views={f"exam/{k}": v for k, v in mapping.items()})
    assert exam.missing_views == [] and used(exam)[View.R_MLO] == ["exam/IMG3"]
    with pytest.raises(ConfigError):
        discover_exams(folder, views={"nope.dcm": View.L_CC})
    csv.write_text("file,view\nIMG0,L-XX\n")
    with pytest.raises(ConfigError):
        read_views_csv(csv)


def test_bad_files_are_skipped_with_reasons_and_the_rest_continues(tmp_path: Path) -> None:
    folder = tmp_path / "exam"
    uid = generate_uid()
    write_exam(folder, study_uid=uid)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "fake.dcm", format="PNG")
    good = save_mg(make_mg("L", "CC", study_uid=uid)[0], folder / "full.dcm").read_bytes()
    (folder / "cut_header.dcm").write_bytes(good[:300])
    (folder / "cut_pixels.dcm").write_bytes(good[:-4000])
    (folder / "full.dcm").unlink()
    ds, _ = make_mg("L", "CC", study_uid=uid)
    del ds.PixelData
    save_mg(ds, folder / "nopix.dcm")
    ds, _ = make_mg("L", "CC", study_uid=uid)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    save_mg(ds, folder / "bits.dcm")
    ds, _ = make_mg("L", "CC", study_uid=uid)
    ds.Rows = ds.Columns = 40000
    save_mg(ds, folder / "huge.dcm")
    (folder / "notes.txt").write_text("hello")
    [exam] = discover_exams(folder)
    assert exam.missing_views == [] and used(exam)[View.L_CC] == ["L_CC.dcm"]
    why = reasons(exam)
    assert "not a DICOM file" in why["fake.dcm"]
    assert "truncated" in why["cut_header.dcm"]
    assert "truncated" in why["cut_pixels.dcm"]
    assert "no PixelData" in why["nopix.dcm"]
    assert "BitsAllocated" in why["bits.dcm"]
    assert "40000 x 40000" in why["huge.dcm"]
    assert "not a DICOM file" in why["notes.txt"]
    for text in list(why.values()) + list(exam.warnings):
        assert "SYN0001" not in text and uid not in text


def test_nothing_usable_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "x.dcm").write_bytes(b"not dicom")
    with pytest.raises(InputError, match="x.dcm: not a DICOM file"):
        discover_exams(tmp_path)


def test_png_exams_unchanged(tmp_path: Path) -> None:
    png = tmp_path / "png_exam"
    png.mkdir()
    for view in VIEWS:
        Image.fromarray(np.zeros((8, 8), np.uint16)).save(png / f"{view.value}.png")
    [exam] = discover_exams(png)
    assert exam.images[View.L_CC][0].kind == "png"
    write_exam(tmp_path / "dicom_exam")
    exams = discover_exams(tmp_path)
    assert [(e.exam_id, e.images[View.L_CC][0].kind) for e in exams] == [
        ("dicom_exam", "dicom"), ("png_exam", "png")]


def test_study_nested_inside_another_studys_folder(tmp_path: Path) -> None:
    uid_a, uid_b = generate_uid(), generate_uid()
    write_exam(tmp_path / "x", study_uid=uid_a)
    write_exam(tmp_path / "x" / "y", study_uid=uid_b, names="b_{lat}_{view}.dcm")
    exams = discover_exams(tmp_path)
    assert len(exams) == 2 and all(e.missing_views == [] for e in exams)
    by_folder = {e.folder.relative_to(tmp_path).as_posix(): e for e in exams}
    # x holds both studies: study A may not claim it by name; y holds only study B.
    assert set(by_folder) == {"x", "x/y"}
    assert by_folder["x"].exam_id.startswith("study-") and by_folder["x/y"].exam_id == "y"
    assert [s.relative for s in by_folder["x/y"].images[View.L_CC]] == ["b_L_CC.dcm"]


def test_same_folder_names_in_different_places_get_distinct_ids(tmp_path: Path) -> None:
    write_exam(tmp_path / "p1" / "study")
    write_exam(tmp_path / "p2" / "study")
    ids = [e.exam_id for e in discover_exams(tmp_path)]
    assert ids == ["p1", "p2"]
    write_exam(tmp_path / "p2" / "other")
    ids = [e.exam_id for e in discover_exams(tmp_path)]
    assert ids[0] == "p1" and "other" in ids and len(set(ids)) == 3
