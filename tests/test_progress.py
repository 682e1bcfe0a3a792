"""Progress where batch jobs look: plain lines with an ETA off a terminal (nohup, Slurm, CI
logs), the stage inside an exam on a terminal, nothing with --quiet."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mammocli import console, reporting
from mammocli.cli.app import app
from mammocli.console import ExamProgress, eta_text, exam_line, stage_text
from mammocli.synthetic.phantoms import write_exam

runner = CliRunner()
EXAM_LINE = re.compile(r"^exam (\d+)/(\d+) (\S+) (ok|failed|skipped) [\d.]+ s, "
                       r"ETA (\d+:\d\d:\d\d)$", re.M)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    buffer = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=buffer, force_terminal=False,
                                                   width=200))
    return buffer


def test_formatters() -> None:
    assert eta_text(None) == "?"
    assert eta_text(0) == "0:00:00"
    assert eta_text(3725.4) == "1:02:05"
    assert stage_text("heatmaps", 300, 1200) == "heatmaps 300/1200 patches"
    assert stage_text("classify") == "classify"
    assert exam_line(3, 10, "e3", "ok", 12.34, 86) == "exam 3/10 e3 ok 12.3 s, ETA 0:01:26"


def test_log_lines_per_exam_with_an_eta_that_leaves_out_the_warm_up(
        captured: io.StringIO) -> None:
    clock = Clock()
    with ExamProgress(4, terminal=False, clock=clock) as shown:
        clock.now += 40  # models load, first exam: slow
        shown.exam_done("a", "ok")
        clock.now += 2
        shown.exam_done("b", "ok")
        clock.now += 4
        shown.exam_done("c", "failed")
        clock.now += 3
        shown.exam_done("d", "ok")
    lines = EXAM_LINE.findall(captured.getvalue())
    assert [(k, n, name, status) for k, n, name, status, _ in lines] == [
        ("1", "4", "a", "ok"), ("2", "4", "b", "ok"), ("3", "4", "c", "failed"),
        ("4", "4", "d", "ok")]
    # After 1: 3 left x 40 s; after 2: 2 left x 2 s; after 3: 1 left x mean(2, 4) = 3 s.
    assert [eta for *_, eta in lines] == ["0:02:00", "0:00:04", "0:00:03", "0:00:00"]
    assert "exam 1/4 a ok 40.0 s" in captured.getvalue()


def test_stage_lines_in_a_log_at_most_every_30_s(captured: io.StringIO) -> None:
    clock = Clock()
    with ExamProgress(2, terminal=False, clock=clock) as shown, \
            reporting.stage_hook(shown.stage):
        reporting.stage("prepare")
        for done in range(0, 1001, 100):  # 10 s per batch of patches
            clock.now += 10
            reporting.stage("heatmaps", done, 1000)
        reporting.stage("classify")
    text = captured.getvalue().splitlines()
    assert text == ["exam 1/2: heatmaps 200/1000 patches, 30 s in this exam",
                    "exam 1/2: heatmaps 500/1000 patches, 60 s in this exam",
                    "exam 1/2: heatmaps 800/1000 patches, 90 s in this exam"]


def test_the_terminal_bar_shows_the_stage_and_an_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=buffer, force_terminal=True, width=120))
    clock = Clock()
    with ExamProgress(3, clock=clock) as shown:
        assert shown.bar is not None and shown.task is not None
        shown.stage("heatmaps", 64, 256)
        assert shown.bar.tasks[0].description == "exam 1/3: heatmaps 64/256 patches"
        clock.now += 10
        shown.exam_done("a", "ok")
        shown.stage("classify")
        task = shown.bar.tasks[0]
        assert task.description == "exam 2/3: classify"
        assert task.fields["eta"] == "0:00:20" and task.completed == 1
        shown.bar.refresh()
    assert "exam 2/3: classify" in buffer.getvalue()


def test_quiet_prints_nothing(captured: io.StringIO) -> None:
    clock = Clock()
    with ExamProgress(2, enabled=False, terminal=False, clock=clock) as shown, \
            reporting.stage_hook(shown.stage):
        clock.now += 100
        reporting.stage("heatmaps", 1, 10)
        shown.exam_done("a", "ok")
    assert captured.getvalue() == ""


def test_the_library_reports_stages_to_the_hook_of_its_context() -> None:
    seen: list[tuple[str, int, int]] = []
    reporting.stage("prepare")  # no hook: nothing happens
    with reporting.stage_hook(lambda stage, done=0, total=0: seen.append((stage, done, total))):
        reporting.stage("heatmaps", 3, 9)
    reporting.stage("classify")
    assert seen == [("heatmaps", 3, 9)]


def test_a_run_with_stderr_in_a_file_logs_every_exam_with_an_eta(
        tmp_path: Path, random_weights: Path, small_pipeline: Path) -> None:
    root = tmp_path / "root"
    for i in range(3):
        write_exam(root / f"e{i}", shape=(300, 220), seed=i)
    args = ["predict", str(root), "--weights-dir", str(random_weights), "--pipeline-config",
            str(small_pipeline), "--tta", "1"]
    log_file = tmp_path / "job.err"
    with log_file.open("w") as err:  # as `nohup mammocli predict ... 2> job.err` or Slurm
        done = subprocess.run([sys.executable, "-m", "mammocli", *args], stderr=err,
                              stdout=subprocess.DEVNULL, timeout=300, check=False,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    text = log_file.read_text()
    assert done.returncode == 0, text
    lines = EXAM_LINE.findall(text)
    assert sorted(name for _, _, name, _, _ in lines) == ["e0", "e1", "e2"]
    assert [(k, n) for k, n, *_ in lines] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert lines[-1][-1] == "0:00:00"
    quiet = runner.invoke(app, [*args, "--quiet"])  # CliRunner's stderr: no terminal either
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_the_summary_table_is_shown_for_one_exam(tmp_path: Path, random_weights: Path,
                                                 small_pipeline: Path) -> None:
    exam = write_exam(tmp_path / "only", shape=(300, 220), seed=1)
    result = runner.invoke(app, ["predict", str(exam), "--weights-dir", str(random_weights),
                                 "--pipeline-config", str(small_pipeline), "--tta", "1",
                                 "--variants", "image-only"])
    assert result.exit_code == 0, result.stderr
    assert "mammocli predict" in result.stderr and "L malignant" in result.stderr
    assert EXAM_LINE.search(result.stderr)


def test_the_heatmaps_command_logs_every_exam_with_an_eta(
        tmp_path: Path, random_weights: Path, small_pipeline: Path) -> None:
    root = tmp_path / "root"
    for i in range(2):
        write_exam(root / f"h{i}", shape=(300, 220), seed=i)
    result = runner.invoke(app, ["heatmaps", str(root), "-o", str(tmp_path / "heat"),
                                 "--weights-dir", str(random_weights),
                                 "--pipeline-config", str(small_pipeline)])
    assert result.exit_code == 0, result.stderr
    lines = EXAM_LINE.findall(result.stderr)
    assert [(k, n, name) for k, n, name, *_ in lines] == [("1", "2", "h0"), ("2", "2", "h1")]
    assert "h1: heatmaps written to" in result.stderr
