"""`mammocli scan`: one walk, headers in parallel, predict's grouping, reasons for the folders
that are no exam; the list it writes gives predict's exams back (issue 16)."""

from __future__ import annotations

import csv
from pathlib import Path

from dicom_factory import write_exam as write_dicom_exam
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.inference.scan_tree import scan_archive
from mammocli.io.discover import discover
from mammocli.io.exam_list import exam_sources, read_exam_list
from mammocli.synthetic.phantoms import write_exam
from mammocli.views import VIEWS

runner = CliRunner()


def archive(root: Path) -> Path:
    write_dicom_exam(root / "2020" / "p1" / "visit" / "series1")
    write_dicom_exam(root / "2020" / "p2" / "s1", names="IM{lat}{view}")
    shared = root / "2021" / "mixed"  # two studies in one folder
    write_dicom_exam(shared, study_uid=generate_uid(), names="a_{lat}_{view}.dcm")
    write_dicom_exam(shared, study_uid=generate_uid(), names="b_{lat}_{view}.dcm", seed=4)
    write_exam(root / "png1", shape=(120, 90), seed=1)
    write_exam(root / "2019" / "png2", shape=(120, 90), seed=2)  # a PNG exam one level down
    (root / "2020" / "junk").mkdir(parents=True)
    (root / "2020" / "junk" / "notes.txt").write_text("not an image")
    (root / "2020" / "junk" / "more.txt").write_text("not an image")
    (root / "empty").mkdir()
    return root


def images(exam) -> dict[str, list[str]]:
    return {v.value: [s.relative for s in exam.images[v]] for v in VIEWS}


def test_scan_finds_predicts_exams_and_says_why_the_rest_are_none(tmp_path: Path) -> None:
    root = archive(tmp_path / "archive")
    result = scan_archive(root, workers=2, chunksize=2)  # the process pool, on small chunks
    by_id = {e.exam_id: e for e in result.exams}
    walked = {e.exam_id: e for e in discover(root).exams}
    # every exam predict ROOT finds, with the same id and files, plus the nested PNG exam
    assert set(by_id) == set(walked) | {"png2"}
    for exam_id, exam in walked.items():
        assert images(by_id[exam_id]) == images(exam) and by_id[exam_id].folder == exam.folder
    assert by_id["png2"].input_kind == "png" and by_id["png2"].missing_views == []
    # files looked at: the DICOM files, the two text files and the nested PNG exam's images
    assert result.files == 4 * 4 + 2 + 4
    reasons = {s.relative: s.reason for s in result.not_exams}
    assert set(reasons) == {"2020/junk", "empty"}
    assert reasons["2020/junk"].startswith("no exam: 2 file(s) not used, e.g. ")
    assert "not a DICOM file" in reasons["2020/junk"]
    assert result.problems == []
    sequential = scan_archive(root, workers=1)
    assert [(e.exam_id, e.folder) for e in sequential.exams] == \
        [(e.exam_id, e.folder) for e in result.exams]


def test_scan_command_writes_a_list_that_predict_reads_back(tmp_path: Path) -> None:
    root = archive(tmp_path / "archive")
    lists = tmp_path / "lists"
    lists.mkdir()
    out = lists / "exams.csv"
    run = runner.invoke(app, ["scan", str(root), "-o", str(out), "--workers", "1"])
    assert run.exit_code == 0, run.output
    assert "6 exam(s) listed" in run.stderr and "files/s" in run.stderr
    rows = list(csv.DictReader(out.open()))
    assert all(r["exam"].startswith("../archive/") for r in rows)  # relative to the list
    mixed = [r for r in rows if r["exam"] == "../archive/2021/mixed"]
    assert len(mixed) == 2 and mixed[0]["id"] != mixed[1]["id"]
    skipped = list(csv.DictReader((lists / "exams.skipped.csv").open()))
    assert [r["folder"] for r in skipped] == ["2020/junk", "empty"]

    listed = {e.exam_id: e for e in exam_sources(read_exam_list(out).entries)}
    scanned = {e.exam_id: e for e in scan_archive(root, workers=1).exams}
    assert set(listed) == set(scanned)
    for exam_id, exam in listed.items():
        assert exam.problem is None, exam.problem
        assert images(exam) == images(scanned[exam_id])

    again = runner.invoke(app, ["scan", str(root), "-o", str(out)])
    assert again.exit_code == 2 and "exists" in again.output
    assert runner.invoke(app, ["scan", str(root), "-o", str(out), "--overwrite"]).exit_code == 0


def test_scan_of_nested_png_exams_only_and_of_nothing(tmp_path: Path) -> None:
    write_exam(tmp_path / "a" / "2019" / "e1", shape=(120, 90), seed=1)
    result = scan_archive(tmp_path / "a", workers=1)
    assert [e.exam_id for e in result.exams] == ["e1"] and result.not_exams == []
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("x")
    run = runner.invoke(app, ["scan", str(tmp_path / "b"), "-o", str(tmp_path / "l.csv")])
    assert run.exit_code == 3 and "no exam found" in run.output
    assert not (tmp_path / "l.csv").exists()
