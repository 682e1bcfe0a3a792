"""`predict --devices` (one worker process per device) and `--prepare-workers` (preparation in
processes): the same results in the same order as a single process, bad exams reported alone,
a worker that dies failing only its own exams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.synthetic.phantoms import write_exam

runner = CliRunner()


def _predict(*args: str | Path):
    return runner.invoke(app, ["predict", *map(str, args)])


def _close(a: object, b: object, tol: float = 1e-6) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol
    return a == b


def test_two_workers_give_the_single_process_results_in_order(
        tmp_path: Path, random_weights: Path, small_pipeline: Path) -> None:
    root = tmp_path / "root"
    write_exam(root / "e1", shape=(400, 300), seed=1)
    write_exam(root / "e2_missing", shape=(400, 300), seed=2)
    (root / "e2_missing" / "L_MLO.png").unlink()
    write_exam(root / "e3", shape=(400, 300), seed=3)
    args = ["--weights-dir", random_weights, "--pipeline-config", small_pipeline, "--tta", "2",
            "--variants", "image-only"]
    single = _predict(root, *args)
    parallel = _predict(root, *args, "--devices", "cpu,cpu", "--threads", "1",
                        "--prepare-workers", "2")
    assert single.exit_code == parallel.exit_code == 3, parallel.stderr
    assert "devices: cpu, cpu" in parallel.stderr
    ours = [json.loads(line) for line in parallel.stdout.splitlines()]
    want = [json.loads(line) for line in single.stdout.splitlines()]
    assert [r["exam_id"] for r in ours] == ["e1", "e2_missing", "e3"]
    assert ours[1]["status"] == "failed" and "missing view(s) L-MLO" in ours[1]["error"]
    for a, b in zip(ours, want, strict=True):
        assert _close(a.get("predictions"), b.get("predictions")), a["exam_id"]


def test_devices_refuses_the_single_stream_and_a_second_device_option(
        tmp_path: Path, random_weights: Path) -> None:
    exam = write_exam(tmp_path / "e1", shape=(400, 300), seed=1)
    run_stream = _predict(exam, "--weights-dir", random_weights, "--devices", "cpu,cpu",
                          "--rng-stream", "run")
    assert run_stream.exit_code == 2 and "--rng-stream exam" in run_stream.stderr
    both = _predict(exam, "--weights-dir", random_weights, "--devices", "cpu",
                    "--device", "cpu")
    assert both.exit_code == 2 and "either --device or --devices" in both.stderr
    for devices in ("cuda:99", "cuda") if not torch.cuda.is_available() else ("cuda:99",):
        missing = _predict(exam, "--weights-dir", random_weights, "--devices", devices)
        assert missing.exit_code == 5 and "CUDA" in missing.stderr, devices


def test_preparation_processes_give_the_same_results(
        tmp_path: Path, random_weights: Path, small_pipeline: Path) -> None:
    root = tmp_path / "root"
    for i in range(3):
        write_exam(root / f"e{i}", shape=(400, 300), seed=10 + i)
    (root / "e1" / "R_CC.png").write_text("not a PNG")
    args = ["--weights-dir", random_weights, "--pipeline-config", small_pipeline, "--tta", "2",
            "--variants", "image-only"]
    threaded = _predict(root, *args)
    processes = _predict(root, *args, "--prepare-workers", "2")
    assert threaded.exit_code == processes.exit_code == 3, processes.stderr
    assert "R_CC.png: cannot read" in processes.stderr
    ours = [json.loads(line) for line in processes.stdout.splitlines()]
    want = [json.loads(line) for line in threaded.stdout.splitlines()]
    assert [(r["exam_id"], r["status"]) for r in ours] == [
        ("e0", "ok"), ("e1", "failed"), ("e2", "ok")]
    for a, b in zip(ours, want, strict=True):
        assert a.get("predictions") == b.get("predictions")  # same process computes: equal
        assert a.get("views") == b.get("views")


def test_a_dead_preparation_process_fails_its_exam_with_a_clear_message(tmp_path: Path) -> None:
    from concurrent.futures.process import BrokenProcessPool

    from mammocli.inference.batch import exam_failure
    from mammocli.io.exam import ExamSource

    failure = exam_failure(ExamSource(exam_id="e7", folder=tmp_path, images={}),
                           BrokenProcessPool("worker died"))
    assert failure.exit_code == 3 and "process preparing this exam died" in failure.error
    assert "--prepare-workers 0" in (failure.hint or "")


def test_a_killed_device_worker_fails_only_its_own_unfinished_exams(
        tmp_path: Path, random_weights: Path, small_pipeline: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A real worker process dies (SIGKILL) on reaching e3: worker 0 (e0, e2) and the exam the
    dead worker had already sent (e1) keep their single-process results; e3 fails; exit 3."""
    from mammocli.parallel import KILL_WORKER_AT_ENV

    root = tmp_path / "root"
    for i in range(4):
        write_exam(root / f"e{i}", shape=(400, 300), seed=20 + i)
    args = ["--weights-dir", random_weights, "--pipeline-config", small_pipeline, "--tta", "1",
            "--variants", "image-only"]
    single = _predict(root, *args)
    assert single.exit_code == 0, single.stderr
    monkeypatch.setenv(KILL_WORKER_AT_ENV, "e3")  # read by the spawned workers
    killed = _predict(root, *args, "--devices", "cpu,cpu", "--threads", "1")
    assert killed.exit_code == 3, killed.stderr
    ours = [json.loads(line) for line in killed.stdout.splitlines()]
    want = [json.loads(line) for line in single.stdout.splitlines()]
    assert [(r["exam_id"], r["status"]) for r in ours] == [
        ("e0", "ok"), ("e1", "ok"), ("e2", "ok"), ("e3", "failed")]
    for a, b in zip(ours[:3], want[:3], strict=True):
        assert a["predictions"].keys() == {"image_only"}
        assert _close(a["predictions"], b["predictions"]), a["exam_id"]
    assert "the worker process for cpu stopped (exit code -9)" in ours[3]["error"]
    assert ours[3]["exit_code"] == 3
    assert "e3" in killed.stderr and "exit code -9" in " ".join(killed.stderr.split())


class _DiesOnBoom:
    """A preparer whose process dies (as if killed for memory) on the exam named boom."""

    def __call__(self, exam: object) -> str:
        import os

        if getattr(exam, "exam_id", "") == "boom":
            os._exit(9)
        return "process"


def test_after_a_preparation_process_dies_the_rest_is_prepared_in_a_thread(
        tmp_path: Path) -> None:
    from concurrent.futures import BrokenExecutor
    from contextlib import ExitStack
    from types import SimpleNamespace

    from mammocli.inference.batch import _preparation
    from mammocli.io.exam import ExamSource

    def exam(name: str) -> ExamSource:
        return ExamSource(exam_id=name, folder=tmp_path, images={})

    predictor = SimpleNamespace(preparer=_DiesOnBoom(), prepare=lambda exam: "thread")
    with ExitStack() as pools:
        submit = _preparation(predictor, 2, pools)  # type: ignore[arg-type]
        assert submit(exam("e1")).result(timeout=60)[0] == "process"  # (prepared, seconds)
        with pytest.raises(BrokenExecutor):
            submit(exam("boom")).result(timeout=60)
        assert submit(exam("e2")).result(timeout=60)[0] == "thread"
