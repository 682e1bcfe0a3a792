"""`predict` over an archive (issue 16): exam lists, shards, the results folder as the ledger
(kill -9 then resume, two tasks on one folder, --retry-failed, status), progress lines and the
throughput summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.inference.sources import SourceRequest, exams_to_run
from mammocli.io.dicom.options import DicomOptions
from mammocli.io.exam_list import write_exam_list
from mammocli.synthetic.phantoms import write_exam

runner = CliRunner()


@pytest.fixture()
def model_args(random_weights: Path, small_pipeline: Path) -> list[str]:
    return ["--weights-dir", str(random_weights), "--pipeline-config", str(small_pipeline),
            "--tta", "0", "--variants", "image-only"]


def archive(root: Path, n: int) -> Path:
    for i in range(n):
        write_exam(root / f"e{i}", shape=(400, 300), seed=i)
    return root


def exam_list(path: Path, root: Path, n: int) -> Path:
    write_exam_list(path, [(f"{root.name}/e{i}", f"e{i}") for i in range(n)])
    return path


def mammocli(*args: str | Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "mammocli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def records(folder: Path) -> dict[str, dict]:
    """Every result file of a folder, parsed (a partial file would fail here)."""
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}


def progress_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def computed(lines: list[dict]) -> list[str]:
    return [x["exam_id"] for x in lines if x["event"] == "exam" and x["status"] != "skipped"]


def test_shards_of_an_exam_list_partition_it(tmp_path: Path) -> None:
    listing = exam_list(tmp_path / "exams.csv", archive(tmp_path / "archive", 7), 7)
    taken: list[str] = []
    for k in (1, 2, 3):
        with exams_to_run(SourceRequest(exams=listing, shard=f"{k}/3"), DicomOptions()) as run:
            taken += [p.exam.exam_id for p in run.planned]
            assert run.listed == 7 and all(p.exam.problem is None for p in run.planned)
    assert sorted(taken) == [f"e{i}" for i in range(7)]  # each exam in exactly one shard


def test_kill_9_mid_run_leaves_no_partial_result_and_resume_finishes_the_rest(
        tmp_path: Path, model_args: list[str]) -> None:
    root = archive(tmp_path / "archive", 5)
    out = tmp_path / "res"
    task = mammocli("predict", root, "-o", f"{out}/", *model_args)
    deadline = time.monotonic() + 300
    while len(list(out.glob("*.json"))) < 2 and task.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    task.send_signal(signal.SIGKILL)
    task.communicate()
    before = records(out)  # every visible file is a whole record
    assert 2 <= len(before) < 5 and all(d["status"] == "ok" for d in before.values())
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}

    again = runner.invoke(app, ["predict", str(root), "-o", f"{out}/", "--resume",
                                "--progress-json", str(tmp_path / "progress.jsonl"),
                                *model_args])
    assert again.exit_code == 0, again.stderr
    after = records(out)
    assert sorted(after) == [f"e{i}" for i in range(5)]
    # Each exam computed once: the resumed run did only the ones the killed run had not.
    assert sorted(computed(progress_lines(tmp_path / "progress.jsonl"))) == \
        sorted(set(after) - set(before))
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json") if p.name in stamps} == \
        stamps


def test_two_tasks_on_one_folder_compute_each_exam_once(tmp_path: Path,
                                                        model_args: list[str]) -> None:
    root = archive(tmp_path / "archive", 4)
    out = tmp_path / "res"
    tasks = [mammocli("predict", root, "-o", f"{out}/", "--resume", "--progress-json",
                      tmp_path / f"p{i}.jsonl", *model_args) for i in (1, 2)]
    for task in tasks:
        _, err = task.communicate(timeout=600)
        assert task.returncode == 0, err
    results = records(out)
    assert sorted(results) == [f"e{i}" for i in range(4)]
    assert all(d["status"] == "ok" for d in results.values())
    done = [computed(progress_lines(tmp_path / f"p{i}.jsonl")) for i in (1, 2)]
    assert sorted(done[0] + done[1]) == [f"e{i}" for i in range(4)]  # none twice
    assert not list(out.glob(".*.json*"))  # no temporary file left behind


def test_retry_failed_reruns_only_failures_and_status_counts_them(
        tmp_path: Path, model_args: list[str]) -> None:
    root = archive(tmp_path / "archive", 3)
    (root / "e1" / "R_MLO.png").unlink()
    listing = exam_list(tmp_path / "exams.csv", root, 3)
    out = f"{tmp_path / 'res'}/"
    first = runner.invoke(app, ["predict", "--exams", str(listing), "-o", out, *model_args])
    assert first.exit_code == 3, first.stderr
    assert "exams/s; time: prepare" in first.stderr  # the throughput summary
    assert "; CPU " in first.stderr  # with the utilisation
    status = runner.invoke(app, ["status", out, "--exams", str(listing), "--json"])
    counts = json.loads(status.stdout)
    assert (counts["done"], counts["failed"], counts["missing"]) == (2, 1, 0)
    assert counts["failed_by_class"] == {"InputError": 1}

    write_exam(root / "e1", shape=(400, 300), seed=1)  # the missing view is back
    progress = tmp_path / "retry.jsonl"
    retry = runner.invoke(app, ["predict", "--exams", str(listing), "-o", out, "--retry-failed",
                                "--progress-json", str(progress), *model_args])
    assert retry.exit_code == 0, retry.stderr
    lines = progress_lines(progress)
    assert computed(lines) == ["e1"]
    assert lines[0]["total"] == 1 and lines[0]["exams_per_s"] > 0
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["ok"] == 1
    assert set(summary["stages_s"]) == {"prepare", "heatmaps", "classify", "write"}
    assert summary["stages_s"]["classify"] > 0
    assert 0 < summary["utilisation"]["cpu"] <= 1 and summary["utilisation"]["gpu"] is None
    status = runner.invoke(app, ["status", out, "--exams", str(listing), "--json"])
    counts = json.loads(status.stdout)
    assert (counts["done"], counts["failed"], counts["missing"]) == (3, 0, 0)


def test_retry_failed_needs_a_results_folder(tmp_path: Path, model_args: list[str]) -> None:
    listing = exam_list(tmp_path / "exams.csv", archive(tmp_path / "archive", 1), 1)
    run = runner.invoke(app, ["predict", "--exams", str(listing), "-o",
                              str(tmp_path / "out.json"), "--retry-failed", *model_args])
    assert run.exit_code == 2 and "--retry-failed needs -o DIR/" in run.stderr
    run = runner.invoke(app, ["predict", str(tmp_path), "--exams", str(listing), *model_args])
    assert run.exit_code == 2 and "either PATH or --exams" in run.stderr
