"""The one atomic writer, output sinks and exam naming, tested on their own (no model runs)."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest
from dicom_factory import write_exam as write_dicom_exam

from mammocli.errors import ConfigError, OutputError
from mammocli.io.discover import discover_exams
from mammocli.io.exam import ExamSource, ImageSource
from mammocli.outputs import files as outputs
from mammocli.outputs import sinks
from mammocli.outputs.schema import ExamFailure, printable, to_json
from mammocli.outputs.sinks import (
    CsvSink,
    FolderSink,
    JsonFileSink,
    Outputs,
    StdoutSink,
    plan_exams,
    safe_file_stem,
)
from mammocli.synthetic.phantoms import write_exam
from mammocli.views import VIEWS
from mammocli.weights import store
from mammocli.weights.cache import user_weights_file

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _exam(folder: Path, exam_id: str | None = None) -> ExamSource:
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for i, view in enumerate(VIEWS):
        path = folder / f"{view.value}.png"
        path.write_bytes(b"x" * (10 + i))
        images[view] = (ImageSource(path, path.name, view),)
    return ExamSource(exam_id=exam_id or folder.name, folder=folder, images=images)


def _failure(exam_id: str) -> ExamFailure:
    return ExamFailure(exam_id=exam_id, error="missing view(s) R-MLO", hint="add it",
                       exit_code=3)


# --- the atomic writer --------------------------------------------------------------------------

@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writer_gives_the_umask_mode(tmp_path: Path, mask: int, mode: int) -> None:
    old = os.umask(mask)
    try:
        outputs.atomic_write_text(tmp_path / "a" / "r.json", "{}\n")
        store._write_user({}, None)  # the weights store's writer is the same one
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "r.json").stat().st_mode) == mode
    user_file = user_weights_file()
    assert stat.S_IMODE(user_file.stat().st_mode) == mode


def test_atomic_writer_keeps_the_old_file_and_no_temp_on_failure(tmp_path: Path,
                                                                 monkeypatch) -> None:
    target = tmp_path / "r.json"
    target.write_text("old\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", full)
    with pytest.raises(OSError):
        outputs.atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_exclusive_create_never_replaces(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    outputs.atomic_write_text(target, "first\n", exclusive=True)
    with pytest.raises(FileExistsError):
        outputs.atomic_write_text(target, "second\n", exclusive=True)
    assert target.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


# --- output targets checked before the run ------------------------------------------------------

def test_targets_checked_before_any_exam(tmp_path: Path) -> None:
    exams, _ = plan_exams([_exam(tmp_path / "in" / "e1")], tmp_path / "in")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    a_folder = tmp_path / "folder"
    a_folder.mkdir()
    cases = [
        (lambda: FolderSink(a_file, overwrite=False, resume=False), "not a folder"),
        (lambda: CsvSink(a_folder, overwrite=False, resume=False), "is a folder"),
        (lambda: JsonFileSink(a_file / "r.json", False, overwrite=False, resume=False),
         "is a file, not a folder"),
        (lambda: JsonFileSink(a_file, False, overwrite=False, resume=False), "--overwrite"),
        (lambda: sinks.HeatmapFolders(a_file, "--save-heatmaps", overwrite=False,
                                      resume=False), "not a folder"),
    ]
    for make, message in cases:
        with pytest.raises(OutputError) as info:
            sink = make()
            sink.plan(exams)
        assert message in str(info.value)
        assert info.value.exit_code == 2


@pytest.mark.skipif(IS_ROOT, reason="root can write into a read-only folder")
def test_unwritable_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            JsonFileSink(locked / "sub" / "r.jsonl", False, overwrite=False,
                         resume=False).plan([])
    finally:
        locked.chmod(0o700)


def test_two_options_naming_one_file_are_refused(tmp_path: Path) -> None:
    same = tmp_path / "r.json"
    with pytest.raises(OutputError, match="both name"):
        Outputs.open([JsonFileSink(same, False, overwrite=False, resume=False),
                      CsvSink(tmp_path / "." / "r.json", overwrite=False, resume=False)], [])


def test_resume_needs_a_file_or_folder() -> None:
    with pytest.raises(ConfigError, match="--resume"):
        sinks.result_sink(None, False, overwrite=False, resume=True)


# --- names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("exam_id", ["../../ESCAPED_OUT", "a/b", "a\\b", "..", ".hidden",
                                     "nul\x00byte", "tab\tnew\nline", "caf\udce9", "x" * 250])
def test_safe_file_stem_never_forms_a_path(exam_id: str, tmp_path: Path) -> None:
    stem = safe_file_stem(exam_id)
    assert "/" not in stem and "\\" not in stem and "\x00" not in stem
    assert not stem.startswith(".")
    assert all(ord(c) >= 32 for c in stem)
    assert len(stem.encode()) <= sinks.MAX_STEM_BYTES
    path = tmp_path / f"{stem}.json"
    path.write_text("{}")  # a real, creatable file name right in the folder
    assert path.parent == tmp_path


def test_long_ids_cut_to_distinct_stems() -> None:
    a, b = "x" * 240 + "a", "x" * 240 + "b"
    assert safe_file_stem(a) != safe_file_stem(b)
    assert safe_file_stem("short") == "short"


def test_non_utf8_names_are_escaped_in_json() -> None:
    failure = _failure("caf\udce9")  # os.fsdecode(b"caf\xe9")
    assert json.loads(to_json(failure))["exam_id"] == "caf\\xe9"
    assert printable("plain") == "plain"


def test_colliding_ids_are_made_unique_and_said(tmp_path: Path) -> None:
    """A PNG exam x/ and a DICOM study in dicom/x/ under one root."""
    root = tmp_path / "root"
    write_exam(root / "x", shape=(120, 90), seed=1)
    write_dicom_exam(root / "dicom" / "x", seed=2)
    write_dicom_exam(root / "dicom" / "y", seed=3)
    exams = discover_exams(root)
    assert sorted(e.exam_id for e in exams).count("x") == 2  # what discovery gives
    planned, notes = plan_exams(exams, root)
    ids = [p.exam.exam_id for p in planned]
    assert sorted(ids) == ["dicom/x", "x", "y"]
    assert len({p.stem for p in planned}) == 3
    assert notes and all("more than one exam" in n for n in notes)
    renamed = [p for p in planned if p.exam.exam_id == "dicom/x"][0]
    assert any("more than one exam" in w for w in renamed.exam.warnings)
    assert renamed.input.folder == "dicom/x"
    assert str(tmp_path) not in json.dumps([p.input.model_dump() for p in planned])


# --- sinks ---------------------------------------------------------------------------------------

def test_stdout_streams_one_flushed_line_per_exam(tmp_path: Path) -> None:
    planned, _ = plan_exams([_exam(tmp_path / "e1"), _exam(tmp_path / "e2")], tmp_path)
    out = tmp_path / "stdout.txt"
    with out.open("w") as stream:
        sink = StdoutSink(single=False, stream=stream)
        sink.write(planned[0], _failure("e1"))
        assert len(out.read_text().splitlines()) == 1  # on disk before the next exam
        sink.write(planned[1], _failure("e2"))
    assert [json.loads(x)["exam_id"] for x in out.read_text().splitlines()] == ["e1", "e2"]


def test_stdout_full_is_a_clear_error(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    planned, _ = plan_exams([_exam(tmp_path / "e1")], tmp_path)
    with open("/dev/full", "w") as stream, pytest.raises(OutputError) as info:
        StdoutSink(single=True, stream=stream).write(planned[0], _failure("e1"))
    assert "stdout" in info.value.message and "no space left" in info.value.message


def test_jsonl_file_holds_whole_lines_when_the_disk_fills(tmp_path: Path, monkeypatch) -> None:
    planned, _ = plan_exams([_exam(tmp_path / "in" / f"e{i}") for i in range(3)],
                            tmp_path / "in")
    target = tmp_path / "r.jsonl"
    sink = JsonFileSink(target, False, overwrite=False, resume=False)
    sink.plan(planned)
    sink.write(planned[0], _failure("e0"))
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        if data.startswith(b'{"schema_version"'):
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(sinks.os, "write", half_then_full)
    with pytest.raises(OutputError, match="no space left"):
        sink.write(planned[1], _failure("e1"))
    monkeypatch.undo()
    lines = target.read_text().splitlines()
    assert [json.loads(x)["exam_id"] for x in lines] == ["e0"]  # no half line left


def test_folder_sink_records_failures_and_the_input(tmp_path: Path) -> None:
    planned, _ = plan_exams([_exam(tmp_path / "in" / "e1")], tmp_path / "in")
    out = tmp_path / "out"
    outs = Outputs.open([FolderSink(out, overwrite=False, resume=False)], planned)
    outs.write(planned[0], _failure("e1"))
    outs.close()
    doc = json.loads((out / "e1.json").read_text())
    assert doc["status"] == "failed" and doc["input"]["folder"] == "e1"
    assert doc["input"]["fingerprint"].startswith("sha256:")
    assert sorted(p.name for p in out.iterdir()) == ["e1.json"]


def test_two_runs_into_one_folder_never_double_write(tmp_path: Path) -> None:
    planned, _ = plan_exams([_exam(tmp_path / "in" / "e1")], tmp_path / "in")
    out = tmp_path / "out"
    first = FolderSink(out, overwrite=False, resume=False)
    second = FolderSink(out, overwrite=False, resume=False)
    first.plan(planned)
    second.plan(planned)  # both start before either wrote anything
    assert first.claim(planned[0]) is None
    assert second.claim(planned[0]) == "another run is computing it"
    first.write(planned[0], sinks.stamp(_failure("e1"), planned[0]))
    assert second.claim(planned[0]) == "another run wrote its result meanwhile"
    with pytest.raises(OutputError, match="another run"):
        second.write(planned[0], _failure("e1").model_copy(update={"error": "second"}))
    assert json.loads((out / "e1.json").read_text())["error"] == "missing view(s) R-MLO"
    first.close()
    second.close()
    assert sorted(p.name for p in out.iterdir()) == ["e1.json"]


def test_resume_never_takes_another_inputs_result(tmp_path: Path) -> None:
    ours, _ = plan_exams([_exam(tmp_path / "a" / "x")], tmp_path / "a")
    other_exam = _exam(tmp_path / "b" / "x")
    (other_exam.folder / "L-CC.png").write_bytes(b"different size")
    theirs, _ = plan_exams([other_exam], tmp_path / "b")
    out = tmp_path / "out"
    out.mkdir()
    ok = {"status": "ok", "exam_id": "x", "input": ours[0].input.model_dump()}
    (out / "x.json").write_text(json.dumps(ok))
    with pytest.raises(OutputError, match="another input"):
        FolderSink(out, overwrite=False, resume=True).plan(theirs)
    again = FolderSink(out, overwrite=False, resume=True)
    again.plan(ours)
    assert again.done(ours[0]) == ok
    # A failure of the same folder is redone, even after its files changed (fixed).
    (out / "x.json").write_text(to_json(sinks.stamp(_failure("x"), ours[0])))
    fixed = FolderSink(out, overwrite=False, resume=True)
    fixed.plan(theirs)
    assert fixed.done(theirs[0]) is None


def test_jsonl_resume_keeps_other_exams_lines(tmp_path: Path) -> None:
    planned, _ = plan_exams([_exam(tmp_path / "in" / "e0"), _exam(tmp_path / "in" / "e1")],
                            tmp_path / "in")
    target = tmp_path / "r.jsonl"
    other = {"status": "ok", "exam_id": "elsewhere", "input": {"folder": "q",
                                                               "fingerprint": "sha256:0"}}
    done = {"status": "ok", "exam_id": "e1", "input": planned[1].input.model_dump()}
    target.write_text("\n".join([json.dumps(other), to_json(sinks.stamp(_failure("e0"),
                                                                       planned[0])),
                                 json.dumps(done)]) + "\n")
    sink = JsonFileSink(target, False, overwrite=False, resume=True)
    sink.plan(planned)
    assert sink.done(planned[0]) is None and sink.done(planned[1]) == done
    sink.write(planned[0], sinks.stamp(_failure("e0").model_copy(update={"error": "again"}),
                                       planned[0]))
    docs = [json.loads(x) for x in target.read_text().splitlines()]
    assert [(d["exam_id"], d.get("error")) for d in docs] == [
        ("elsewhere", None), ("e1", None), ("e0", "again")]


def test_csv_resume_merges_rows(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("exam_id,left_benign,right_benign,left_malignant,right_malignant\n"
                    "e0,0.1000,0.2000,0.3000,0.4000\n")
    planned, _ = plan_exams([_exam(tmp_path / "in" / "e0")], tmp_path / "in")
    with pytest.raises(OutputError, match="--overwrite"):
        CsvSink(path, overwrite=False, resume=False).plan(planned)
    sink = CsvSink(path, overwrite=False, resume=True)
    sink.plan(planned)
    sink.close()
    assert path.read_text().splitlines()[1] == "e0,0.1000,0.2000,0.3000,0.4000"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(OutputError, match="not a CSV written by predict"):
        CsvSink(path, overwrite=False, resume=True).plan(planned)


def test_csv_on_a_full_disk_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "r.csv"
    path.write_text("exam_id,left_benign,right_benign,left_malignant,right_malignant\n")
    sink = CsvSink(path, overwrite=False, resume=True)
    sink.plan([])
    sink.dirty = True

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sinks, "atomic_write_text", full)
    with pytest.raises(OutputError, match="r.csv: no space left"):
        sink.close()
    assert path.read_text().startswith("exam_id,")


def test_devices_are_never_renamed_over(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(OutputError, match="not a regular file"):
        CsvSink(Path("/dev/full"), overwrite=True, resume=False).plan([])


def test_heatmap_overlays_leave_matplotlib_backend_alone() -> None:
    # A library function must not switch the caller's (global) matplotlib backend.
    import matplotlib
    import numpy as np

    from mammocli.outputs.heatmaps import _overlay_png

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        heat = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(40, 30)
        png = _overlay_png(np.zeros((40, 30), np.uint16), heat, heat[::-1], "L-CC")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
