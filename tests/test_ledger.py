"""The results folder as a ledger: status counts, running locks, rate and ETA, --retry-failed
ids, and `mammocli status` (issue 16)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.errors import ConfigError
from mammocli.io.exam import ExamSource, ImageSource
from mammocli.outputs.ledger import ledger_status, read_ledger, retry_failed_ids
from mammocli.outputs.schema import (
    BreastPredictions,
    ExamFailure,
    PredictionResult,
    Probabilities,
    to_json,
)
from mammocli.outputs.sinks import ExamLock, FolderSink, Outputs, plan_exams
from mammocli.views import VIEWS

runner = CliRunner()


def _exam(folder: Path, exam_id: str) -> ExamSource:
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for view in VIEWS:
        path = folder / f"{view.value}.png"
        path.write_bytes(b"x")
        images[view] = (ImageSource(path, path.name, view),)
    return ExamSource(exam_id=exam_id, folder=folder, images=images)


def _ok(exam_id: str, duration: float) -> PredictionResult:
    p = BreastPredictions(left=Probabilities(benign=0.1, malignant=0.2),
                          right=Probabilities(benign=0.3, malignant=0.4))
    return PredictionResult(exam_id=exam_id, family="dmv-cnn", model="view-wise", views={},
                            predictions={"image_only": p}, primary_variant="image_only",
                            device="cpu", seed=0, rng_mode="exam", tta=0,
                            duration_s=duration, weights=[], mammocli_version="0",
                            warnings=['a "quoted" warning\n  "status": "failed"'])


def write_results(tmp_path: Path, outcomes: dict[str, str | int]) -> Path:
    """Records through the real folder sink: "ok", or a failure's exit code."""
    exams = [_exam(tmp_path / "in" / i, i) for i in outcomes]
    planned, _ = plan_exams(exams, tmp_path / "in")
    out = tmp_path / "results"
    outputs = Outputs.open([FolderSink(out, overwrite=False, resume=False)], planned)
    for p, (exam_id, outcome) in zip(planned, outcomes.items(), strict=True):
        assert outputs.claim(p) is None
        record = (_ok(exam_id, 2.0) if outcome == "ok" else
                  ExamFailure(exam_id=exam_id, error="bad", exit_code=int(outcome)))
        outputs.write(p, record)
    outputs.close()
    return out


IDS = ['e1', 'e2', 'e3', 'q"uote\\d', 'café', 'e6']


def test_status_counts_done_failed_by_class_running_missing(tmp_path: Path) -> None:
    out = write_results(tmp_path, {"e1": "ok", "e2": "ok", "e3": 3, 'q"uote\\d': 3,
                                   "café": 4})
    (out / "notes.json").write_text("[1, 2]")  # not a record
    (out / ".e9.json.abc.tmp").write_text("{")  # the writer's temporary file: not counted
    (out / ".locks").mkdir()
    (out / ".locks" / "stale.lock").write_text("")  # left by a killed run
    held = ExamLock(str(out / ".locks" / "e6.lock"))  # as a running task holds it
    assert held.acquire()
    assert not ExamLock(held.lock_file).acquire()  # exclusive: a second task is turned away
    try:
        ledger = read_ledger(out)
        status = ledger_status(ledger, [*IDS, "e7"])
    finally:
        held.release()
    assert (status.done, status.failed, status.running) == (2, 3, 1)
    assert status.failed_by_class == {"InputError": 2, "WeightsError": 1}
    assert (status.missing, status.listed, status.missing_ids) == (1, 7, ["e7"])
    assert ledger.running == ["e6"] and ledger.stale_locks == ["stale"]
    assert ledger.unreadable == ["notes.json"]
    assert ledger.records['q"uote\\d'].ok is False  # escapes read back exactly
    assert ledger.records["e1"].duration_s == 2.0 and status.mean_duration_s == 2.0
    # a released lock is no longer running, and can be taken again
    assert read_ledger(out).running == [] and ledger_status(read_ledger(out)).missing is None
    again = ExamLock(held.lock_file)
    assert again.acquire()
    again.release()


def test_rate_and_eta_from_finish_times(tmp_path: Path) -> None:
    out = write_results(tmp_path, {"e1": "ok", "e2": "ok", "e3": "ok", "e4": 3})
    t0 = 1_700_000_000.0
    # three finishes 60 s apart, and one a day before (a pause must not count)
    for name, t in (("e1", t0 - 86_400), ("e2", t0), ("e3", t0 + 60), ("e4", t0 + 120)):
        os.utime(out / f"{name}.json", (t, t))
    status = ledger_status(read_ledger(out), ["e1", "e2", "e3", "e4", "e5", "e6"])
    assert status.exams_per_hour == pytest.approx(60.0)  # 2 intervals in 120 s
    assert status.eta_s == pytest.approx(2 * 60.0)  # 2 missing at one a minute
    done = ledger_status(read_ledger(out), ["e1", "e2"])
    assert done.missing == 0 and done.eta_s == 0.0 and done.not_listed == 2


def test_retry_failed_gives_the_failed_ids(tmp_path: Path) -> None:
    out = write_results(tmp_path, {"e1": "ok", "e2": 3, "e3": 5, "e4": "ok"})
    ledger = read_ledger(out)
    assert retry_failed_ids(ledger) == ["e2", "e3"]
    assert retry_failed_ids(ledger, ["e3", "e9", "e2", "e1"]) == ["e3", "e2"]


def test_a_folder_that_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a results folder"):
        read_ledger(tmp_path / "nope")


def test_status_command_text_and_json(tmp_path: Path) -> None:
    out = write_results(tmp_path, {"e1": "ok", "e2": 3})
    exams = tmp_path / "exams.csv"
    exams.write_text("exam\nin/e1\nin/e2\nin/e3\n")
    text = runner.invoke(app, ["status", str(out), "--exams", str(exams)])
    assert text.exit_code == 0, text.output
    assert "done     1" in text.stdout and "InputError     1" in text.stdout
    assert "missing  1 of 3 listed" in text.stdout and "missing: e3" in text.stdout
    as_json = runner.invoke(app, ["status", str(out), "--exams", str(exams), "--json"])
    doc = json.loads(as_json.stdout)
    assert (doc["done"], doc["failed"], doc["missing"], doc["missing_ids"]) == (1, 1, 1, ["e3"])
    missing = runner.invoke(app, ["status", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "not a results folder" in missing.output


def test_threaded_reads_give_the_same_ledger_and_follow_changes_between_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads spread over threads (as when the first reads waited for a disk; slices of 2 files
    here) equal one thread's; nothing is cached,
    so a record that changes, appears or goes between two reads is seen as it is now."""
    from mammocli.outputs import ledger as ledger_module

    outcomes: dict[str, str | int] = {f"e{i}": ("ok" if i % 3 else 3) for i in range(9)}
    out = write_results(tmp_path, outcomes)
    (out / "big.json").write_bytes(b"[" + b"0, " * 40_000 + b"0]")  # > one 64 KiB read
    single = read_ledger(out)
    monkeypatch.setattr(ledger_module, "_PROBE", 2)
    monkeypatch.setattr(ledger_module, "_reads_waited", lambda wall, cpu: True)
    threaded = read_ledger(out)
    assert threaded == single and len(threaded.records) == 9
    assert threaded.unreadable == ["big.json"]
    assert (ledger_status(threaded).done, ledger_status(threaded).failed) == (6, 3)

    failed = out / "e0.json"  # a retry turned the failure into a result
    failed.write_text(to_json(_ok("e0", 1.0), indent=2) + "\n")
    (out / "e1.json").unlink()
    again = ledger_status(read_ledger(out), [f"e{i}" for i in range(9)])
    assert (again.done, again.failed, again.missing) == (6, 2, 1)
    assert read_ledger(out).records["e0"].ok and again.failed_by_class == {"InputError": 2}
