"""Hostile exam folders and roots: wrong types in exam.yaml, unreadable and special files,
links out of the tree, files that look like views but are not used, folders that hold no exam.
Each problem is that exam's failure (or a line saying why a folder was left out), never a
traceback that ends the batch."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammocli.errors import InputError
from mammocli.io.discover import discover, discover_exams
from mammocli.io.walk import walk_files
from mammocli.preprocess.prepare import check_usable
from mammocli.synthetic.phantoms import write_exam
from mammocli.views import View

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _problem(folder: Path) -> str:
    (exam,) = discover_exams(folder)
    with pytest.raises(InputError) as info:
        check_usable(exam)
    assert info.value.exit_code == 3
    return info.value.message


def _exam_with_yaml(tmp_path: Path, text: str) -> Path:
    exam = write_exam(tmp_path / "exam", shape=(40, 30))
    (exam / "exam.yaml").write_text(text)
    return exam


@pytest.mark.parametrize("text,expected", [
    ("views:\n  L-CC: 5\n", "line 2, views.L-CC: expected a file name or a list of file names, "
                            "got a number"),
    ("views:\n  L-CC: true\n", "line 2, views.L-CC: expected a file name or a list of file "
                               "names, got true/false"),
    ("views:\n  R-MLO: 5.5\n", "line 2, views.R-MLO: expected a file name or a list"),
    ("views:\n  L-CC: [a.png, 3]\n", "got a list holding a number"),
    ("views:\n  L-CC: {a: b}\n", "got a mapping"),
    ("\nhorizontal_flip: [a, b]\n", "line 2, horizontal_flip: expected NO, YES or auto, "
                                    "got a list"),
    ("horizontal_flip: {a: 1}\n", "line 1, horizontal_flip: expected NO, YES or auto, got a "
                                  "mapping"),
    ("views:\n  5: a.png\n", "line 2, views.5: unknown view"),
    ("views: 7\n", "line 1, views: Input should be a valid dictionary"),
])
def test_exam_yaml_wrong_types_name_key_line_and_expectation(tmp_path: Path, text: str,
                                                             expected: str) -> None:
    message = _problem(_exam_with_yaml(tmp_path, text))
    assert message.startswith("exam: exam.yaml: invalid")
    assert expected in message


def test_exam_yaml_nul_byte_deep_nesting_and_oversize(tmp_path: Path) -> None:
    exam = _exam_with_yaml(tmp_path, 'views:\n  L-CC: "L_CC\\0.png"\n')
    assert "views.L-CC: a file name is empty or holds a NUL byte" in _problem(exam)
    (exam / "exam.yaml").write_text("views: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert "nested too deeply" in _problem(exam)
    (exam / "exam.yaml").write_text("# " + "x" * (2 << 20) + "\n")
    assert "an exam.yaml is at most" in _problem(exam)
    (exam / "exam.yaml").write_bytes(b"views: {L-CC: \xff.png}\n")
    assert "exam.yaml: not UTF-8 text" in _problem(exam)


def test_exam_yaml_that_cannot_be_read(tmp_path: Path) -> None:
    exam = write_exam(tmp_path / "exam", shape=(40, 30))
    (exam / "exam.yaml").mkdir()
    assert "exam.yaml: not a regular file" in _problem(exam)
    (exam / "exam.yaml").rmdir()
    os.mkfifo(exam / "exam.yaml")  # reading it would block forever
    assert "exam.yaml: not a regular file" in _problem(exam)
    (exam / "exam.yaml").unlink()
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("views: {L-CC: L_CC.png}\n")
    (exam / "exam.yaml").symlink_to(outside)
    message = _problem(exam)
    assert "exam.yaml: symbolic link to outside exam: not followed" in message
    assert str(tmp_path) not in message


def test_exam_yaml_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exam = _exam_with_yaml(tmp_path, "views: {L-CC: L_CC.png}\n")
    if IS_ROOT:  # root reads files whatever their mode: make the read itself fail
        real = Path.read_bytes

        def denied(self: Path) -> bytes:
            if self.name == "exam.yaml":
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", denied)
    else:
        (exam / "exam.yaml").chmod(0)
    try:
        message = _problem(exam)
    finally:
        (exam / "exam.yaml").chmod(0o600)
    assert "exam.yaml: cannot be read (Permission denied)" in message
    assert str(tmp_path) not in message


def test_listed_fifo_missing_and_linked_files_fail_the_exam_without_hanging(
        tmp_path: Path) -> None:
    exam = write_exam(tmp_path / "exam", shape=(40, 30))
    os.mkfifo(exam / "pipe.png")
    (tmp_path / "outside.png").write_bytes((exam / "R_CC.png").read_bytes())
    (exam / "out_link.png").symlink_to(tmp_path / "outside.png")
    (exam / "in_link.png").symlink_to(exam / "R_CC.png")  # inside the folder: fine
    (exam / "exam.yaml").write_text(
        "views:\n  L-CC: pipe.png\n  R-CC: in_link.png\n  L-MLO: gone.png\n"
        "  R-MLO: [out_link.png, /etc/hostname, img/../../x.png]\n")
    signal.alarm(20)  # a regression would block on the FIFO: fail instead of hanging
    try:
        message = _problem(exam)
    finally:
        signal.alarm(0)
    assert "L-CC: pipe.png: not a regular file" in message
    assert "L-MLO: gone.png: no such file" in message
    assert "R-MLO: out_link.png: a symbolic link to outside the exam folder" in message
    assert "R-MLO: /etc/hostname: points outside the exam folder" in message
    assert "R-MLO: img/../../x.png: points outside the exam folder" in message
    assert "in_link.png" not in message


def test_files_that_look_like_views_are_listed_with_why_they_were_not_used(
        tmp_path: Path) -> None:
    exam = write_exam(tmp_path / "exam", shape=(40, 30))
    png = (exam / "L_CC.png").read_bytes()
    (exam / "L_CC.png").unlink()
    (exam / "L_CC.png.bak").write_bytes(png)
    (exam / "L_CC.jpg").write_bytes(png)
    (exam / "L_CC_R_MLO.png").write_bytes(png)
    (exam / ".L_CC.png").write_bytes(png)
    (exam / ".DS_Store").write_bytes(b"\0")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(exam / "R_MLO.jpg")
    (exam_source,) = discover_exams(exam)
    assert not exam_source.images[View.L_CC]  # the hidden file is not used
    reasons = {s.relative: s.reason for s in exam_source.skipped}
    assert reasons == {
        ".L_CC.png": "hidden file: ignored",
        "L_CC.jpg": "a PNG file with a JPEG name: rename it to .png",
        "L_CC.png.bak": "not a .png file (the name ends in .bak)",
        "L_CC_R_MLO.png": "the name holds more than one view (L-CC, R-MLO)",
        "R_MLO.jpg": "JPEG is not supported (lossy): use the 16-bit PNG or DICOM original",
    }
    message = _problem(exam)
    assert message.startswith("exam: missing view(s) L-CC; files not used:")
    for name, reason in reasons.items():
        assert f"{name}: {reason}" in message


def test_symlinked_images_inside_and_outside_the_exam_folder(tmp_path: Path) -> None:
    exam = write_exam(tmp_path / "exam", shape=(40, 30))
    shutil.move(exam / "L_CC.png", tmp_path / "L_CC.png")
    (exam / "L_CC.png").symlink_to(tmp_path / "L_CC.png")  # out of the exam folder
    (exam / "sub").mkdir()
    (exam / "R_MLO_copy.png").symlink_to(exam / "R_MLO.png")  # inside: used
    (exam / "l_mlo_dangling.png").symlink_to(exam / "nowhere.png")
    (exam / "r_cc_loop.png").symlink_to(exam / "r_cc_loop.png")
    (found,) = discover_exams(exam)
    assert found.missing_views == [View.L_CC]
    assert [s.relative for s in found.images[View.R_MLO]] == ["R_MLO.png", "R_MLO_copy.png"]
    reasons = {s.relative: s.reason for s in found.skipped}
    assert reasons["L_CC.png"] == "symbolic link to outside exam: not followed"
    assert reasons["l_mlo_dangling.png"].startswith("dangling symbolic link")
    assert reasons["r_cc_loop.png"] == "symbolic link loop"


def test_walker_refuses_links_out_of_the_tree_and_detects_loops(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.dcm").write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.dcm").write_bytes(b"x")
    (root / "a" / "out").symlink_to(tmp_path / "outside")
    (root / "a" / "b" / "up").symlink_to(root / "a")  # a loop back to an ancestor
    (root / "a" / "dangling").symlink_to(root / "missing")
    os.mkfifo(root / "a" / "fifo")
    walked = walk_files(root)
    assert [p.relative_to(root).as_posix() for p in walked.files] == ["a/b/f.dcm"]
    reasons = {e.path.relative_to(root).as_posix(): e.reason for e in walked.skipped}
    assert reasons == {
        "a/b/up": "link to a folder already read (a loop or a duplicate): not followed",
        "a/dangling": "dangling symbolic link (its target does not exist)",
        "a/fifo": "not a regular file (FIFO, socket or device)",
        "a/out": "symbolic link to outside root: not followed",
    }


def test_root_reports_every_folder_it_leaves_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_exam(root / "good", shape=(40, 30))
    (root / "empty").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("hello")
    (root / ".cache").mkdir()  # hidden: ignored silently
    outside = write_exam(tmp_path / "outside_exam", shape=(40, 30))
    (root / "linked").symlink_to(outside)
    jpeg = root / "jpegs"
    jpeg.mkdir()
    for name in ("L_CC", "R_CC", "L_MLO", "R_MLO"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(jpeg / f"{name}.jpg")
    found = discover(root)
    assert [e.exam_id for e in found.exams] == ["good", "jpegs"]
    ignored = {s.relative: s.reason for s in found.ignored}
    assert ignored == {
        "empty": "no exam: no exam.yaml, no image named after a view, no DICOM file",
        "notes": "no exam: 1 file(s) not used, e.g. readme.txt: not a DICOM file, or one cut "
                 "short: 5 bytes, less than the 132-byte preamble and 'DICM' marker",
        "linked": "symbolic link to outside root: not followed",
    }
    message = _problem(root / "jpegs")
    assert "L_CC.jpg: JPEG is not supported" in message


def test_markup_looking_folder_names_stay_verbatim(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_exam(root / "[bold]x", shape=(40, 30))
    (root / "[red]bad").mkdir()
    (root / "[red]bad" / "exam.yaml").write_text(
        'views: {L-CC: "a[/]b.png", R-CC: "[bold]c.png"}\n')
    exams = discover_exams(root)
    assert [e.exam_id for e in exams] == ["[bold]x", "[red]bad"]
    assert not exams[0].missing_views
    with pytest.raises(InputError) as info:
        check_usable(exams[1])
    assert info.value.message.startswith("[red]bad: exam.yaml: listed file(s) cannot be used")
    assert "L-CC: a[/]b.png: no such file" in info.value.message
    assert "R-CC: [bold]c.png: no such file" in info.value.message


def test_png_and_dicom_exams_in_one_root(tmp_path: Path) -> None:
    from dicom_factory import write_exam as write_dicom_exam

    write_exam(tmp_path / "png_exam", shape=(40, 30))
    write_dicom_exam(tmp_path / "dicom_exam")
    (tmp_path / "png_exam" / "exam.yaml").write_text("horizontal_flip: [a, b]\n")
    found = discover(tmp_path)
    by_id = {e.exam_id: e for e in found.exams}
    assert by_id["dicom_exam"].input_kind == "dicom" and not by_id["dicom_exam"].missing_views
    assert by_id["png_exam"].problem is not None and found.ignored == []


def test_unreadable_subfolder_is_its_exams_failure(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Any error while reading one exam folder (here a bug simulated in the reader) is recorded
    # on that exam; the others are read.
    from mammocli.io import discover as discover_module

    write_exam(tmp_path / "a", shape=(40, 30))
    write_exam(tmp_path / "b", shape=(40, 30))
    real = discover_module.read_exam_folder

    def flaky(folder: Path):
        if folder.name == "a":
            raise PermissionError(13, "Permission denied")
        return real(folder)

    monkeypatch.setattr(discover_module, "read_exam_folder", flaky)
    a, b = discover_exams(tmp_path)
    assert a.problem is not None and "cannot read the exam folder (Permission denied)" in \
        a.problem.message
    assert b.problem is None and not b.missing_views
