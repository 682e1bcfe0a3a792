"""Exam lists (exams.csv): reading with located errors, one folder per row, ids (issue 16)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from dicom_factory import write_exam as write_dicom_exam
from pydicom.uid import generate_uid

from mammocli.errors import InputError
from mammocli.io.exam_list import (
    exam_source,
    exam_sources,
    looks_like_study_uid,
    read_exam_list,
    write_exam_list,
)
from mammocli.synthetic.phantoms import write_exam
from mammocli.views import View

UID = "1.2.826.0.1.3680043.8.498.12345"


def test_rows_become_exams_by_discovery_of_their_folder_only(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    write_exam(root / "2019" / "e1", shape=(120, 90), seed=1)
    write_dicom_exam(root / "2020" / "study-x" / "series1")
    write_exam(root / "2019" / "not_listed", shape=(120, 90), seed=2)
    lists = tmp_path / "lists"
    lists.mkdir()
    csv_path = lists / "exams.csv"
    # BOM, CRLF, a comment row, a blank line, a DICOMweb row, an id column
    csv_path.write_bytes(("\ufeffexam,id\r\n../archive/2019/e1,\r\n# a comment,\r\n\r\n"
                          f"../archive/2020/study-x,dicom-1\r\n{UID},\r\n").encode())
    exams = read_exam_list(csv_path)
    uid_id = "study-" + hashlib.sha1(UID.encode()).hexdigest()[:8]  # as retrieval names it
    assert [e.exam_id for e in exams.entries] == ["e1", "dicom-1", uid_id]
    assert [e.line for e in exams.entries] == [2, 5, 6]
    assert exams.studies[0].study_uid == UID and exams.studies[0].path is None
    sources = exam_sources(exams.entries)
    assert [s.exam_id for s in sources] == ["e1", "dicom-1"]
    assert [s.input_kind for s in sources] == ["png", "dicom"]
    assert all(s.problem is None and s.missing_views == [] for s in sources)
    assert sources[1].folder == lists / "../archive/2020/study-x"
    assert sources[1].images[View.L_CC][0].relative == "series1/L_CC.dcm"


def test_a_bad_row_fails_alone_naming_the_file_and_line(tmp_path: Path) -> None:
    write_exam(tmp_path / "ok", shape=(120, 90), seed=1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    csv_path = tmp_path / "exams.csv"
    csv_path.write_text("exam\nok\nmissing\nempty\na_file\n")
    sources = {s.exam_id: s for s in exam_sources(read_exam_list(csv_path).entries)}
    assert sources["ok"].problem is None
    missing = sources["missing"].problem
    assert missing is not None and missing.message == ("exams.csv, line 3: missing: no such "
                                                       "folder")
    assert str(tmp_path) not in missing.message  # never an absolute path
    empty = sources["empty"].problem
    assert empty is not None and empty.message.startswith("exams.csv, line 4: empty: no exam")
    assert sources["a_file"].problem.message.endswith("a_file: not a folder")  # type: ignore


def test_a_folder_of_several_studies_is_resolved_by_id(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    write_dicom_exam(shared, study_uid=generate_uid(), names="a_{lat}_{view}.dcm")
    write_dicom_exam(shared, study_uid=generate_uid(), names="b_{lat}_{view}.dcm", seed=4)
    from mammocli.io.discover import discover

    [b_id] = [e.exam_id for e in discover(shared).exams
              if e.images[View.L_CC][0].relative.startswith("b_")]
    csv_path = tmp_path / "exams.csv"
    csv_path.write_text(f"exam,id\nshared,{b_id}\n")
    [entry] = read_exam_list(csv_path).entries
    exam = exam_source(entry)
    assert exam.problem is None and exam.exam_id == b_id
    assert {s.relative[:2] for v in exam.images.values() for s in v} == {"b_"}
    csv_path.write_text("exam\nshared\n")
    [entry] = read_exam_list(csv_path).entries
    problem = exam_source(entry).problem
    assert problem is not None and "the folder holds 2 exams" in problem.message
    assert "'id' column" in (problem.hint or "")


@pytest.mark.parametrize(("text", "words"), [
    ("folder,id\na,\n", "no 'exam' column"),
    ("exam,id\n,x\n", "exams.csv, line 2: empty 'exam' value"),
    ("exam,id\na/e1,\nb/e1,\n", "exams.csv, line 3: exam id 'e1' is also used on line 2"),
    ("exam\na\n./a\n", "exams.csv, line 3: './a' is also on line 2"),
    (f"exam\n{UID}\n{UID}\n", "exams.csv, line 3: this study is also on line 2"),
    ("exam,id\n", "no exam listed"),
])
def test_list_errors_are_located(tmp_path: Path, text: str, words: str) -> None:
    csv_path = tmp_path / "exams.csv"
    csv_path.write_text(text)
    with pytest.raises(InputError) as info:
        read_exam_list(csv_path)
    assert words in info.value.message
    assert UID not in str(info.value)  # a UID is never shown


def test_uid_or_folder() -> None:
    assert looks_like_study_uid(UID)
    assert not looks_like_study_uid("2019")  # a folder named like a number
    assert not looks_like_study_uid("1.2")
    assert not looks_like_study_uid("./1.2.3") and not looks_like_study_uid("a/1.2.3")


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    write_exam(tmp_path / "x y,z", shape=(120, 90), seed=1)  # a comma and a space in the name
    out = tmp_path / "exams.csv"
    write_exam_list(out, [("x y,z", "exam-1")])
    assert out.read_text() == 'exam,id\n"x y,z",exam-1\n'
    [exam] = exam_sources(read_exam_list(out).entries)
    assert exam.exam_id == "exam-1" and exam.problem is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file
