"""`predict` outputs end to end: never lost, never clobbered, checked before the run.

Image-only at the small pipeline sizes: each run is a second or two.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mammocli.analysis.predictions import load_predictions
from mammocli.analysis.tables import Columns
from mammocli.cli.app import app
from mammocli.families.dmv_cnn import DmvCnnModels
from mammocli.inference.predictor import Predictor
from mammocli.outputs import sinks
from mammocli.outputs.schema import PredictionResult
from mammocli.synthetic.phantoms import write_exam

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def predict(*args: str | Path):
    return runner.invoke(app, ["predict", *map(str, args)])


@pytest.fixture()
def args(random_weights: Path, small_pipeline: Path) -> list[str]:
    return ["--weights-dir", str(random_weights), "--pipeline-config", str(small_pipeline),
            "--tta", "1", "--variants", "image-only"]


def _root(root: Path, names: list[str]) -> Path:
    for i, name in enumerate(names):
        write_exam(root / name, shape=(200, 150), seed=i)
    return root


@pytest.fixture()
def no_compute(monkeypatch) -> None:
    """Output checks must come before the models load."""
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("models loaded before the outputs were checked")

    monkeypatch.setattr(DmvCnnModels, "load", boom)


def test_failed_exam_has_a_record_and_csv_rows_merge_on_resume(tmp_path: Path, args) -> None:
    root = _root(tmp_path / "root", ["bad", "good"])
    (root / "bad" / "R_MLO.png").unlink()
    out, table = tmp_path / "results", tmp_path / "r.csv"
    first = predict(root, *args, "-o", f"{out}/", "--csv", table)
    assert first.exit_code == 3, first.stderr
    failed = json.loads((out / "bad.json").read_text())
    assert failed["status"] == "failed" and "R-MLO" in failed["error"]
    assert failed["input"]["folder"] == "bad"
    scores = load_predictions(out, Columns())
    assert len(scores.failed) == 1 and "bad" in scores.failed[0]  # hybrid/evaluate list it
    stamp = (out / "good.json").stat().st_mtime_ns
    shutil.copy(root / "good" / "R_MLO.png", root / "bad" / "R_MLO.png")
    resumed = predict(root, *args, "-o", f"{out}/", "--csv", table, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert (out / "good.json").stat().st_mtime_ns == stamp  # not recomputed
    assert json.loads((out / "bad.json").read_text())["status"] == "ok"
    rows = table.read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["good", "bad"]  # earlier row kept


def test_no_output_is_replaced_without_overwrite(tmp_path: Path, args, no_compute) -> None:
    exam = _root(tmp_path / "root", ["e1"]) / "e1"
    table = tmp_path / "r.csv"
    table.write_text("keep\n")
    r = predict(exam, *args, "--csv", table)
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    assert table.read_text() == "keep\n"
    heat = tmp_path / "heat"
    (heat / "e1").mkdir(parents=True)
    r = predict(exam, *args, "--save-heatmaps", heat)
    assert r.exit_code == 2 and "already holds heatmaps" in r.stderr
    r = runner.invoke(app, ["heatmaps", str(exam), "-o", str(heat), *args[:4]])
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    existing = tmp_path / "out.json"
    existing.write_text("keep\n")
    for command in (["hybrid", "--radiologist-scores", str(EXAMPLES / "scores.csv")],
                    ["evaluate", "--labels", str(EXAMPLES / "scores.csv")]):
        r = runner.invoke(app, [*command, "--predictions", str(EXAMPLES / "predictions.csv"),
                                "-o", str(existing)])
        assert r.exit_code == 2 and "--overwrite" in r.stderr, command
        assert existing.read_text() == "keep\n"


def test_hybrid_overwrite_replaces(tmp_path: Path) -> None:
    existing = tmp_path / "out.csv"
    existing.write_text("old\n")
    r = runner.invoke(app, ["hybrid", "--radiologist-scores", str(EXAMPLES / "scores.csv"),
                            "--predictions", str(EXAMPLES / "predictions.csv"), "--format",
                            "csv", "-o", str(existing), "--overwrite", "--quiet"])
    assert r.exit_code == 0, r.stderr
    assert existing.read_text() != "old\n"


def test_output_targets_are_checked_before_the_first_exam(tmp_path: Path, args,
                                                          no_compute) -> None:
    exam = _root(tmp_path / "root", ["e1"]) / "e1"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    a_folder = tmp_path / "a_folder"
    a_folder.mkdir()
    cases = [
        (["-o", f"{a_file}/"], "not a folder"),
        (["--csv", a_folder], "is a folder"),
        (["--save-heatmaps", a_file], "not a folder"),
        (["-o", a_file / "r.json"], "is a file, not a folder"),
        (["-o", tmp_path / "r.json", "--csv", tmp_path / "r.json"], "both name"),
    ]
    for extra, message in cases:
        r = predict(exam, *args, *extra)
        assert r.exit_code == 2, (extra, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr
        assert "hint" in r.stderr


def _interrupt_at(monkeypatch, n: int) -> None:
    real = Predictor.run
    calls = {"n": 0}

    def run(self, *a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Predictor, "run", run)


def test_interrupt_keeps_finished_results_and_resume_finishes(tmp_path: Path, args,
                                                               monkeypatch) -> None:
    root = _root(tmp_path / "root", ["e1", "e2", "e3"])
    target = tmp_path / "r.jsonl"
    _interrupt_at(monkeypatch, 2)
    r = predict(root, *args, "-o", target)
    assert r.exit_code == 130
    assert "interrupted after 1 of 3" in r.stderr and "--resume" in r.stderr
    first = target.read_text().splitlines()
    assert [json.loads(x)["exam_id"] for x in first] == ["e1"]
    monkeypatch.undo()
    again = predict(root, *args, "-o", target, "--resume")
    assert again.exit_code == 0, again.stderr
    lines = target.read_text().splitlines()
    assert [json.loads(x)["exam_id"] for x in lines] == ["e1", "e2", "e3"]
    assert json.loads(lines[0]) == json.loads(first[0])  # e1 kept, not recomputed


def test_stdout_streams_results_before_an_interrupt(tmp_path: Path, args, monkeypatch) -> None:
    root = _root(tmp_path / "root", ["e1", "e2", "e3"])
    _interrupt_at(monkeypatch, 3)
    r = predict(root, *args)
    assert r.exit_code == 130
    assert [json.loads(x)["exam_id"] for x in r.stdout.splitlines()] == ["e1", "e2"]
    assert "2 record(s) kept in stdout" in r.stderr


def test_full_disk_mid_run_stops_and_names_what_was_kept(tmp_path: Path, args,
                                                         monkeypatch) -> None:
    root = _root(tmp_path / "root", ["e1", "e2", "e3"])
    out = tmp_path / "results"
    real = sinks.atomic_write_text
    calls = {"n": 0}

    def full_on_second(path: Path, text: str, **k: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, text, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(sinks, "atomic_write_text", full_on_second)
    r = predict(root, *args, "-o", f"{out}/")
    assert r.exit_code == 2, r.stderr
    assert "no space left" in r.stderr and "e2.json" in r.stderr
    assert "after 1 of 3" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["e1.json"]  # nothing half-written


def test_two_roots_with_the_same_ids_never_replace_each_other(tmp_path: Path, args) -> None:
    a = _root(tmp_path / "a", ["x"])
    b = tmp_path / "b"
    write_exam(b / "x", shape=(220, 160), seed=9)  # same id, another input
    out = tmp_path / "results"
    assert predict(a, *args, "-o", f"{out}/").exit_code == 0
    kept = (out / "x.json").read_text()
    r = predict(b, *args, "-o", f"{out}/", "--resume")
    assert r.exit_code == 2 and "another input" in r.stderr
    assert (out / "x.json").read_text() == kept
    same = predict(a, *args, "-o", f"{out}/", "--resume")  # the same input: done
    assert same.exit_code == 0 and "already done" in same.stderr


def test_hostile_exam_names_in_outputs_and_console(tmp_path: Path, args) -> None:
    root = tmp_path / "root"
    long_name = "L" * 250
    latin1 = os.fsdecode(b"caf\xe9")
    for i, name in enumerate([long_name, latin1, "x[bold]y", "[red]w[blink]"]):
        write_exam(root / name, shape=(200, 150), seed=i)
    out = tmp_path / "results"
    r = predict(root, *args, "-o", f"{out}/", "--csv", tmp_path / "r.csv")
    assert r.exit_code == 0, r.stderr
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 4 and all(len(f.encode()) <= 255 for f in files)
    docs = [json.loads((out / f).read_text()) for f in files]
    assert {d["exam_id"] for d in docs} == {long_name, "caf\\xe9", "x[bold]y", "[red]w[blink]"}
    for d in docs:
        PredictionResult.model_validate(d)
    assert "caf\\xe9" in (tmp_path / "r.csv").read_text()
    assert "x[bold]y" in r.stderr and "[red]w[blink]" in r.stderr  # summary shows them verbatim
    stdout_run = predict(root / latin1, *args)
    assert stdout_run.exit_code == 0, stdout_run.stderr
    assert json.loads(stdout_run.stdout)["exam_id"] == "caf\\xe9"


def test_save_heatmaps_obeys_overwrite_and_moves_folders_whole(tmp_path: Path, args) -> None:
    exam = _root(tmp_path / "root", ["e1"]) / "e1"
    heat = tmp_path / "heat"
    first = predict(exam, *args, "--save-heatmaps", heat)
    assert first.exit_code == 0, first.stderr
    index = json.loads((heat / "e1" / "heatmaps.json").read_text())
    assert len(index["images"]) == 4
    assert predict(exam, *args, "--save-heatmaps", heat).exit_code == 2
    again = predict(exam, *args, "--save-heatmaps", heat, "--overwrite")
    assert again.exit_code == 0, again.stderr
    assert sorted(p.name for p in heat.iterdir()) == ["e1"]  # no staging folder left
    assert (heat / "e1" / "heatmaps.json").exists()
