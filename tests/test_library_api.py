"""What the thin CLI commands call is a library function Python users can call too, and it
computes exactly what the command prints (issue 13: the CLI only parses and renders)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mammocli.analysis.evaluation import evaluate, report_csv
from mammocli.analysis.hybrid import hybrid_report, read_reader_scores
from mammocli.analysis.predictions import load_predictions
from mammocli.analysis.tables import Columns, read_labels
from mammocli.cli.app import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


def test_hybrid_report_is_what_the_command_prints() -> None:
    columns = Columns()
    report = hybrid_report(read_reader_scores(EXAMPLES / "scores.csv", columns),
                           load_predictions(EXAMPLES / "predictions.csv", columns),
                           weight=0.25, n_bootstrap=20, seed=3, sweep_step=0.5)
    assert report.metrics is not None  # the example scores carry labels
    assert [p.weight for p in report.sweep or []] == [0.0, 0.5, 1.0]
    r = runner.invoke(app, ["hybrid", "--radiologist-scores", str(EXAMPLES / "scores.csv"),
                            "--predictions", str(EXAMPLES / "predictions.csv"), "--weight",
                            "0.25", "--n-bootstrap", "20", "--seed", "3", "--sweep",
                            "--sweep-step", "0.5", "--quiet"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(report.model_dump_json())


def test_evaluation_csv_and_curves_come_from_the_library(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    exams = ("demo-001", "demo-002", "demo-003", "demo-004")
    positive = {("demo-002", "L"), ("demo-003", "R")}
    labels.write_text("exam_id,side,label\n" + "".join(
        f"{e},{s},{int((e, s) in positive)}\n" for e in exams for s in ("L", "R")))
    columns = Columns()
    ev = evaluate(load_predictions(EXAMPLES / "predictions.csv", columns),
                  read_labels(labels, columns), None, [], 20, 0)
    assert list(ev.curves()) == ["breast malignant", "exam malignant"]
    y, s = ev.curves()["exam malignant"]
    assert len(y) == len(s) == 4
    r = runner.invoke(app, ["evaluate", "--predictions", str(EXAMPLES / "predictions.csv"),
                            "--labels", str(labels), "--n-bootstrap", "20", "--format", "csv",
                            "--quiet"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip() == report_csv(ev.report).strip()


def test_environment_report_is_a_library_function() -> None:
    from mammocli.inference.environment import environment_report

    report = environment_report()
    assert report["mammocli"] and report["torch"]
    assert isinstance(report["cpu"], dict) and "bf16" in report["cpu"]
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0
    shown = json.loads(r.stdout)
    assert shown.keys() == report.keys() and shown["cache_dir"] == report["cache_dir"]
