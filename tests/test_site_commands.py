"""At a new site (issue 17): header fields from discovery to the result, `evaluate --by-header`,
`--report`, `--score`, and the new ROC/PR plots of `evaluate` and `hybrid`."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from dicom_factory import write_exam as write_dicom_exam
from PIL import Image
from typer.testing import CliRunner

from mammocli.analysis.hybrid import read_reader_scores
from mammocli.analysis.predictions import load_predictions
from mammocli.cli.app import app
from mammocli.cli.columns import make_columns
from mammocli.outputs.schema import PredictionResult

runner = CliRunner()


def _result(exam: str, left: float, right: float, header: dict[str, Any] | None = None,
            calibrated: tuple[float, float] | None = None) -> dict[str, Any]:
    probs = {"left": {"benign": 0.1, "malignant": left},
             "right": {"benign": 0.1, "malignant": right}}
    doc: dict[str, Any] = {
        "exam_id": exam, "family": "dmv-cnn", "model": "view-wise", "views": {},
        "predictions": {"image_only": probs}, "primary_variant": "image_only", "device": "cpu",
        "seed": 0, "rng_mode": "exam", "tta": 1, "duration_s": 0.1,
        "weights": [{"name": "sample_image_model.p", "sha256": "a" * 64}],
        "mammocli_version": "0.1.0", "header": header}
    if calibrated is not None:
        doc["site"] = {"site_created": "2025-01-01T00:00:00Z", "method": "logistic",
                       "calibrated_malignant": {"left": calibrated[0], "right": calibrated[1],
                                                "exam": max(calibrated)}, "flags": []}
    return doc


@pytest.fixture()
def two_scanners(tmp_path: Path) -> tuple[Path, Path]:
    """70 exams: 50 of ACME, 20 of Other whose non-malignant exams score higher."""
    rng = np.random.default_rng(0)
    lines, labels = [], ["exam_id,side,label"]
    for i in range(70):
        other = i >= 50
        y = (rng.random(2) < 0.15).astype(int)
        if i in (0, 1, 50, 51):
            y = np.array([1, 0])
        base = rng.normal(-2.5 + (1.5 if other else 0.0), 0.5, 2) + 2.0 * y
        p = 1 / (1 + np.exp(-base))
        header = {"Manufacturer": "Other" if other else "ACME", "KVP": 28.0 + (i % 3),
                  "ImageSize": "300x200", "TissueMean": 0.3}
        cal = 1 / (1 + np.exp(-(0.8 * base - 0.3)))
        lines.append(json.dumps(_result(f"e{i}", p[0], p[1], header, (cal[0], cal[1]))))
        labels += [f"e{i},L,{y[0]}", f"e{i},R,{y[1]}"]
    results, labels_csv = tmp_path / "results.jsonl", tmp_path / "labels.csv"
    results.write_text("\n".join(lines) + "\n")
    labels_csv.write_text("\n".join(labels) + "\n")
    return results, labels_csv


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_h2 = tag == "h2"
        if tag == "img":
            self.images.append(dict(attrs))
        for k, v in attrs:
            if k in ("href", "src") and v and not v.startswith("data:"):
                self.links.append(v)

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.h2.append(data)
            self._in_h2 = False


def test_evaluate_by_header_flags_the_scanner_whose_scores_differ(
        two_scanners: tuple[Path, Path], tmp_path: Path) -> None:
    results, labels = two_scanners
    report, plots = tmp_path / "report.html", tmp_path / "plots"
    r = runner.invoke(app, ["evaluate", "--predictions", str(results), "--labels", str(labels),
                            "--by-header", "Manufacturer,KVP", "--score", "raw",
                            "--report", str(report), "--plots", str(plots),
                            "--n-bootstrap", "50"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    shift = doc["shift"]
    rows = {(g["column"], g["value"]): g for g in shift["subgroups"]}
    assert {k for k in rows if k[0] == "Manufacturer"} == {("Manufacturer", "ACME"),
                                                           ("Manufacturer", "Other")}
    assert len([k for k in rows if k[0] == "KVP"]) >= 2  # binned by the default edges
    other = rows[("Manufacturer", "Other")]
    assert other["n"] == 20 and other["scores_differ"]
    assert not rows[("Manufacturer", "ACME")]["scores_differ"]  # the odd one only
    assert other["auroc"]["ci_low"] <= other["auroc"]["estimate"] <= other["auroc"]["ci_high"]
    assert not any(g["scores_differ"] for g in shift["subgroups"] if g["column"] == "KVP")
    # the plain warning, on stderr and in the JSON; the table on stderr
    assert any(w.startswith("Manufacturer = Other: scores of non-malignant exams run higher")
               for w in shift["warnings"])
    assert "Manufacturer = Other: scores of non-malignant exams run higher" in \
           " ".join(r.stderr.split())
    assert "shift report: 70 exams" in r.stderr
    # the HTML report: one offline file with the sections and figures
    parser = _Html()
    text = report.read_text()
    parser.feed(text)
    assert parser.h2 == ["Evaluation", "Calibration", "Shift report"]
    assert len(parser.images) == 4  # ROC, PR, reliability, forest
    assert all(str(i["src"]).startswith("data:image/png;base64,") for i in parser.images)
    assert parser.links == [] and "<script" not in text
    assert "Manufacturer = Other" in text and "cross-validation by exam" in text
    # the new ROC/PR figures: two PNGs, legends with the AUC (not checked in pixels here)
    for name in ("roc.png", "pr.png"):
        with Image.open(plots / name) as im:
            assert im.format == "PNG" and im.size[0] >= 600


def test_evaluate_reads_calibrated_scores_by_default(two_scanners: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    results, labels = two_scanners
    auto = runner.invoke(app, ["evaluate", "--predictions", str(results), "--labels",
                               str(labels), "--n-bootstrap", "0", "-q"])
    raw = runner.invoke(app, ["evaluate", "--predictions", str(results), "--labels",
                              str(labels), "--n-bootstrap", "0", "-q", "--score", "raw"])
    assert auto.exit_code == 0 and raw.exit_code == 0, auto.stderr + raw.stderr
    a, b = json.loads(auto.stdout), json.loads(raw.stdout)
    assert a["model_source"] == "results (calibrated by the site file)"
    assert b["model_source"] == "results"
    columns = make_columns(None, "side", "label", None)
    cal = load_predictions(results, columns, "calibrated").malignant
    plain = load_predictions(results, columns, "raw").malignant
    labels_by_key = {(e, s): int(v) for e, s, v in (line.split(",") for line in
                                                    labels.read_text().splitlines()[1:])}
    for doc, scores in ((a, cal), (b, plain)):
        t = doc["breast_level"]["malignant"]["thresholds"][0]
        assert t["threshold"] == 0.5
        assert t["tp"] == sum(1 for k, s in scores.items() if s >= 0.5 and labels_by_key[k])
        assert t["fp"] == sum(1 for k, s in scores.items() if s >= 0.5 and not labels_by_key[k])
    assert a["breast_level"]["malignant"]["thresholds"][0] != \
           b["breast_level"]["malignant"]["thresholds"][0]
    # the report's calibration section compares raw with the site file's calibration
    report = tmp_path / "r.html"
    r = runner.invoke(app, ["evaluate", "--predictions", str(results), "--labels", str(labels),
                            "--n-bootstrap", "0", "-q", "--report", str(report)])
    assert r.exit_code == 0, r.stderr
    assert "the site file&#x27;s calibration" in report.read_text()


def test_score_calibrated_refuses_results_without_site_outputs(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(_result("a", 0.1, 0.2)) + "\n")
    labels = tmp_path / "l.csv"
    labels.write_text("exam_id,side,label\na,L,0\na,R,1\n")
    r = runner.invoke(app, ["evaluate", "--predictions", str(results), "--labels", str(labels),
                            "--score", "calibrated", "-q"])
    assert r.exit_code == 3 and "no calibrated probabilities" in r.stderr
    bad = runner.invoke(app, ["evaluate", "--predictions", str(results), "--labels",
                              str(labels), "--by-header", "PatientName", "-q"])
    assert bad.exit_code == 2 and "not a field results carry" in bad.stderr


def test_hybrid_plots_put_each_reader_beside_the_curve(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = ["exam_id,side,label,model,reader_a,reader_b"]
    for i in range(40):
        for side in "LR":
            y = int(rng.random() < 0.3) if i > 1 else int(side == "L")
            rows.append(f"x{i},{side},{y},{np.clip(0.3 * y + rng.random() * 0.7, 0, 1):.3f},"
                        f"{0.5 * y * (rng.random() < 0.8):.2f},{0.4 * (rng.random() < 0.3):.2f}")
    scores = tmp_path / "scores.csv"
    scores.write_text("\n".join(rows) + "\n")
    plots = tmp_path / "plots"
    args = ["hybrid", "--radiologist-scores", str(scores), "--predictions", str(scores),
            "--model-column", "model", "--reader-columns", "reader_*", "--n-bootstrap", "20",
            "-q", "--plots", str(plots)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    for name in ("roc.png", "pr.png"):
        with Image.open(plots / name) as im:
            assert im.format == "PNG"
    # the reader points drawn: exam-level reads, recalled at any suspicion
    from mammocli.analysis.curves import reader_points
    from mammocli.analysis.hybrid import match
    cols = make_columns(None, "side", "label", "model", ["reader_*"])
    m = match(read_reader_scores(scores, cols), load_predictions(scores, cols))
    assert m.labels is not None
    points = reader_points(m.labels, m.reader_scores, m.readers)
    assert [p.name for p in points] == ["reader_a", "reader_b"]
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "--overwrite" in again.stderr  # outputs never replaced


def test_dicom_header_fields_reach_the_result(tmp_path: Path, random_weights: Path,
                                              small_pipeline: Path) -> None:
    paths = write_dicom_exam(tmp_path / "root" / "exam1", seed=1)
    for path in paths.values():
        ds = pydicom.dcmread(path)
        ds.Manufacturer, ds.ManufacturerModelName, ds.KVP = "ACME", "Model 7", "28"
        ds.PixelSpacing = [0.07, 0.07]
        ds.InstitutionName = "Secret Hospital"
        ds.save_as(path)
    r = runner.invoke(app, ["predict", str(tmp_path / "root" / "exam1"), "--weights-dir",
                            str(random_weights), "--pipeline-config", str(small_pipeline),
                            "--tta", "1", "--variants", "image-only", "-q"])
    assert r.exit_code == 0, r.stderr
    result = PredictionResult.model_validate_json(r.stdout)
    image = result.views["L-CC"][0]
    assert image.header is not None and image.image is not None
    assert image.header["Manufacturer"] == "ACME" and image.header["KVP"] == 28.0
    assert image.header["PixelSpacing"] == 0.07 and image.header["ImageSize"] == "300x200"
    assert (image.image.rows, image.image.columns) == (300, 200)
    assert 0.0 < image.image.tissue_mean <= 1.0
    assert result.header is not None
    assert result.header["Manufacturer"] == "ACME" and result.header["ManufacturerModelName"] \
        == "Model 7"
    assert result.header["TissueMean"] == pytest.approx(
        float(np.median([i.image.tissue_mean for v in result.views.values() for i in v
                         if i.image is not None])))
    # nothing identifying: no names, IDs, institution, dates or UIDs anywhere in the record
    assert not re.search(r"Secret|SYNTHETIC|SYN0001|2024", r.stdout)
