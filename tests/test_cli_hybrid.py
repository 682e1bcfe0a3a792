"""`mammocli hybrid` and `mammocli evaluate` through the CLI: JSON on stdout, tables on stderr,
exit codes 2 (usage) and 3 (bad input), valid PNG plots."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from mammocli.cli.app import app

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
runner = CliRunner()

STUDY = ["--exam-column", "case_ID", "--model-column", "AI_DMVCNN_POM"]


def hybrid(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["hybrid", *args])


def test_hybrid_reader_study(reader_study_csv: Path) -> None:
    r = hybrid("--radiologist-scores", str(reader_study_csv), "--predictions",
               str(reader_study_csv), *STUDY, "--reader-columns", "Reader*_POM",
               "--n-bootstrap", "50", "--sweep")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    roc = out["metrics"]["auroc"]
    assert round(roc["model"]["estimate"], 3) == 0.779
    assert round(roc["mean_of_readers"]["estimate"], 3) == 0.779
    assert round(roc["mean_of_hybrids"]["estimate"], 3) == 0.852
    assert round(roc["averaged_reader_score"]["estimate"], 3) == 0.895
    assert out["metrics"]["n_bootstrap"] == 50 and out["n_breasts"] == 1440
    assert len(out["breasts"]) == 1440 and len(out["sweep"]) == 11
    assert out["unmatched_scores_exams"] == [] and out["unmatched_prediction_exams"] == []
    assert "mean of readers' AUCs" in r.stderr  # the table goes to stderr


def test_hybrid_example_csv_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "hybrid.csv"
    r = hybrid("--radiologist-scores", str(EXAMPLES / "scores.csv"), "--predictions",
               str(EXAMPLES / "predictions.csv"), "--format", "csv", "-o", str(out),
               "--weight", "0.25", "--n-bootstrap", "20", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 8
    first = rows[0]
    assert float(first["hybrid_reader_a"]) == pytest.approx(
        0.25 * float(first["reader_a"]) + 0.75 * float(first["model"]))


def test_hybrid_without_labels_has_no_metrics(tmp_path: Path) -> None:
    scores = tmp_path / "s.csv"
    scores.write_text((EXAMPLES / "scores.csv").read_text().replace(",label", ",x"))
    r = hybrid("--radiologist-scores", str(scores), "--predictions",
               str(EXAMPLES / "predictions.csv"))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["metrics"] is None


@pytest.mark.parametrize(("edit", "extra", "code", "message"), [
    (lambda t: t.replace(",reader,", ",who,"), [], 2, "reader"),
    (lambda t: t, ["--weight", "2"], 2, "outside 0-1"),
    (lambda t: t, ["--exam-column", "nope"], 2, "missing column"),
    (lambda t: t.replace("demo-003,L,reader_b,0.60", "demo-003,L,reader_b,-1"), [], 3,
     "line 14"),
    (lambda t: t + "demo-004,R,reader_b,0.40,1\n", [], 3, "duplicate"),
    (lambda t: t.replace("demo-004,R,reader_a,0.60,1\n", "").replace(
        "demo-004,R,reader_b,0.40,1\n", ""), [], 3, "side only"),
    (lambda t: t.replace("demo-004,R,reader_b,0.40,1", "demo-004,R,reader_b,0.40,2"), [], 3,
     "not 0 or 1"),
])
def test_hybrid_bad_input_exit_codes(tmp_path: Path, edit, extra: list[str], code: int,  # type: ignore[no-untyped-def]
                                     message: str) -> None:
    scores = tmp_path / "scores.csv"
    scores.write_text(edit((EXAMPLES / "scores.csv").read_text()))
    r = hybrid("--radiologist-scores", str(scores), "--predictions",
               str(EXAMPLES / "predictions.csv"), "--n-bootstrap", "0", *extra)
    assert r.exit_code == code, r.stderr
    assert message in r.stderr
    assert r.stdout == ""


def _assert_png(path: Path) -> None:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert 300 <= im.width <= 2000 and 300 <= im.height <= 2000
        colours = im.convert("RGB").getcolors(maxcolors=100_000)
        assert colours is not None and len(colours) > 10  # curves and text, not a blank image


def test_evaluate_reader_study(reader_study_csv: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"  # per-breast labels with a made-up subgroup column
    with reader_study_csv.open() as f, labels.open("w", newline="") as g:
        w = csv.writer(g)
        w.writerow(["case_ID", "side", "label", "age"])
        for row in csv.DictReader(f):
            w.writerow([row["case_ID"], row["side"], row["label"], 40 + int(row["case_ID"]) % 40])
    r = runner.invoke(app, [
        "evaluate", "--predictions", str(reader_study_csv), "--labels", str(labels), *STUDY,
        "--plots", str(tmp_path / "plots"), "--metarepo-csv", str(tmp_path / "meta.csv"),
        "--threshold", "0.1", "--threshold", "0.5", "--by", "age:50,60,70", "--n-bootstrap",
        "50"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    breast = out["breast_level"]["malignant"]
    assert breast["n"] == 1440 and breast["n_positive"] == 61
    assert round(breast["auroc"]["estimate"], 3) == 0.779
    assert breast["auroc"]["ci_low"] <= breast["auroc"]["estimate"] <= breast["auroc"]["ci_high"]
    assert out["exam_level"]["malignant"]["n"] == 720
    assert [t["threshold"] for t in breast["thresholds"]] == [0.1, 0.5]
    t = breast["thresholds"][0]
    assert t["tp"] + t["fn"] == 61 and t["tn"] + t["fp"] == 1379
    assert {s["value"] for s in out["subgroups"]} == {"<50", "50-60", "60-70", ">=70"}
    assert sum(s["n_breasts"] for s in out["subgroups"]) == 1440
    _assert_png(tmp_path / "plots" / "roc.png")
    _assert_png(tmp_path / "plots" / "pr.png")
    meta = list(csv.DictReader((tmp_path / "meta.csv").open()))
    assert len(meta) == 720 and list(meta[0]) == ["index", "left_malignant", "right_malignant"]


def test_evaluate_results_folder_with_benign(tmp_path: Path) -> None:
    from test_hybrid import result

    folder = tmp_path / "results"
    folder.mkdir()
    scores = [("a", 0.9, 0.1), ("b", 0.2, 0.3), ("c", 0.1, 0.7), ("d", 0.4, 0.05)]
    with (folder / "all.jsonl").open("w") as f:
        for exam, left, right in scores:
            f.write(json.dumps(result(exam, left, right)) + "\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("exam_id,left_benign,right_benign,left_malignant,right_malignant\n"
                      "a,0,1,1,0\nb,1,0,0,0\nc,0,0,0,1\nd,1,0,0,0\n")
    r = runner.invoke(app, ["evaluate", "--predictions", str(folder), "--labels", str(labels),
                            "--n-bootstrap", "20", "--format", "csv"])
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    tasks = {(row["level"], row["task"]) for row in rows}
    assert ("breast", "benign") in tasks and ("exam", "malignant") in tasks
    roc = [row for row in rows if row["level"] == "breast" and row["task"] == "malignant"
           and row["metric"] == "auroc"][0]
    assert float(roc["estimate"]) == 1.0


def test_evaluate_unmatched_labels_exit_3(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("exam_id,side,label\nzz,L,0\nzz,R,1\n")
    r = runner.invoke(app, ["evaluate", "--predictions", str(EXAMPLES / "predictions.csv"),
                            "--labels", str(labels)])
    assert r.exit_code == 3 and "no exam id" in r.stderr


def test_installed_entry_point() -> None:
    exe = shutil.which("mammocli")
    if exe is None:
        pytest.skip("mammocli entry point not installed")
    p = subprocess.run([exe, "hybrid", "--radiologist-scores", str(EXAMPLES / "scores.csv"),
                        "--predictions", str(EXAMPLES / "predictions.csv"), "--n-bootstrap",
                        "10"], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["metrics"]["auroc"]["model"]["estimate"] == 1.0
