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


def test_header_reads_from_the_first_bytes_equal_reads_of_the_whole_file(tmp_path: Path) -> None:
    """The header is parsed from the file's first 64 KiB when it ends there; a longer header is
    read again from the file: the record and the pixel checks are the same either way."""
    import pydicom
    from dicom_factory import make_mg, save_mg

    from mammocli.io.dicom import scan

    small = save_mg(make_mg("L", "CC", rows=300, cols=200)[0], tmp_path / "small.dcm")
    big_ds = make_mg("L", "CC", rows=300, cols=200)[0]
    big_ds.add_new(0x00091010, "OB", b"\0" * (scan._PREFIX + 1000))  # header > the prefix
    big = save_mg(big_ds, tmp_path / "big.dcm")
    cut = tmp_path / "cut.dcm"  # pixel data cut short beyond the prefix
    cut.write_bytes(big.read_bytes()[:-5000])
    tiny = save_mg(make_mg("R", "MLO", rows=16, cols=16)[0], tmp_path / "tiny.dcm")
    tiny_cut = tmp_path / "tiny_cut.dcm"  # all in memory, pixel data cut short
    tiny_cut.write_bytes(tiny.read_bytes()[:-100])
    assert big.stat().st_size > scan._PREFIX and small.stat().st_size > scan._PREFIX
    assert tiny.stat().st_size < scan._PREFIX
    for path in (small, big, cut, tiny, tiny_cut):
        ds, element = scan.read_header(path, path.name)
        with open(path, "rb") as f:  # the reference: pydicom on the file itself
            expected = pydicom.dcmread(f, stop_before_pixels=True)
            expected_element = scan._pixel_element(f, expected)
        assert ds == expected and element == expected_element
    assert scan.read_header(small, "small.dcm")[1].length == 300 * 200 * 2
    for path in (cut, tiny_cut):
        header, _ = scan.scan_header(path, path.name, 10**8)
        assert header.problem is not None and header.problem.startswith("pixel data truncated")
    header, _ = scan.scan_header(big, "big.dcm", 10**8)
    assert header.problem is None and header.view.base == "CC"
