"""`predict --site`: calibrated outputs and operating-point flags in every result, and a site
file of other weights refused before the first exam (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mammocli.analysis.operating_points import Target
from mammocli.analysis.predictions import load_predictions
from mammocli.analysis.site import ModelIdentity, WeightRef, build_site, load_site, match
from mammocli.analysis.tables import read_labels
from mammocli.cli.app import app
from mammocli.cli.columns import make_columns
from mammocli.outputs.schema import PredictionResult
from mammocli.synthetic.phantoms import write_exam

runner = CliRunner()


@pytest.fixture()
def run_args(random_weights: Path, small_pipeline: Path) -> list[str]:
    return ["--weights-dir", str(random_weights), "--pipeline-config", str(small_pipeline),
            "--tta", "1", "--variants", "image-only", "-q"]


def _site_for(first: PredictionResult, tmp_path: Path, sha_change: str | None = None) -> Path:
    """A site.json fitted on 40 synthetic results of the same model and weights as `first`
    (the weights of a real run), optionally with one weight file's hash changed."""
    rng = np.random.default_rng(0)
    weights = [w.model_dump(include={"name", "sha256"}) for w in first.weights]
    lines, labels = [], ["exam_id,side,label"]
    for i in range(40):
        z = rng.normal(-1.5, 1.0, 2)
        p = 1 / (1 + np.exp(-(1.6 * z - 0.8)))
        y = (rng.random(2) < 1 / (1 + np.exp(-z))).astype(int)
        if i < 2:
            y = np.array([1 - i, i])
        doc: dict[str, Any] = json.loads(first.model_dump_json())
        doc.update(exam_id=f"s{i}", weights=weights, predictions={
            first.primary_variant.value: {"left": {"benign": 0.1, "malignant": p[0]},
                                          "right": {"benign": 0.1, "malignant": p[1]}}})
        lines.append(json.dumps(doc))
        labels += [f"s{i},L,{y[0]}", f"s{i},R,{y[1]}"]
    results, labels_csv = tmp_path / "fit.jsonl", tmp_path / "labels.csv"
    results.write_text("\n".join(lines) + "\n")
    labels_csv.write_text("\n".join(labels) + "\n")
    columns = make_columns(None, "side", "label", None)
    m = match(load_predictions(results, columns), read_labels(labels_csv, columns),
              results.name, labels_csv.name)
    refs = [WeightRef(name=w["name"], sha256=sha_change if sha_change and j == 0 else w["sha256"])
            for j, w in enumerate(sorted(weights, key=lambda w: w["name"]))]
    identity = ModelIdentity(family=first.family.value, kind=first.model.value,
                             variant=first.primary_variant.value, weights=refs)
    site = build_site(m, identity, "logistic",
                      [Target(kind="specificity", value=0.8), Target(kind="recall_rate",
                                                                      value=0.2)],
                      folds=2, n_bootstrap=0)
    path = tmp_path / ("other_site.json" if sha_change else "site.json")
    path.write_text(site.to_json())
    return path


def test_predict_with_a_site_file_adds_the_calibration_applied_by_hand(
        tmp_path: Path, run_args: list[str]) -> None:
    exam = write_exam(tmp_path / "exams" / "exam_a", shape=(400, 300), seed=3)
    plain = runner.invoke(app, ["predict", str(exam), *run_args])
    assert plain.exit_code == 0, plain.stderr
    first = PredictionResult.model_validate_json(plain.stdout)
    assert first.site is None
    # a PNG exam has no header: image size and tissue mean only
    assert all(i.header is None for v in first.views.values() for i in v)
    assert first.header is not None and set(first.header) == {
        "Rows", "Columns", "ImageSize", "TissueMean"}
    assert first.header["ImageSize"] == "400x300"
    site_path = _site_for(first, tmp_path)

    out = runner.invoke(app, ["predict", str(exam), *run_args, "--site", str(site_path)])
    assert out.exit_code == 0, out.stderr
    result = PredictionResult.model_validate_json(out.stdout)
    # the raw probabilities stay, identical to the run without a site file
    assert result.predictions == first.predictions
    site = load_site(site_path)
    raw = np.array([result.primary.left.malignant, result.primary.right.malignant])
    by_hand = site.calibrate(raw)  # the fit applied by hand
    assert result.site is not None
    cal = result.site.calibrated_malignant
    assert (cal.left, cal.right) == pytest.approx(tuple(by_hand), abs=1e-12)
    assert cal.exam == max(cal.left, cal.right)
    a = site.calibration
    assert cal.left == pytest.approx(1 / (1 + np.exp(-(a.slope * np.log(raw[0] / (1 - raw[0]))
                                                       + a.intercept))))
    assert result.site.method == "logistic" and result.site.site_created == site.created
    assert [f.operating_point for f in result.site.flags] == [
        op.name for op in site.operating_points]
    for flag, op in zip(result.site.flags, site.operating_points, strict=True):
        t = op.threshold.estimate
        assert flag.threshold == t and flag.level == op.level
        assert (flag.left, flag.right) == (raw[0] >= t, raw[1] >= t)
        assert flag.exam == (flag.left or flag.right)


def test_a_site_file_of_other_weights_is_refused_before_the_first_exam(
        tmp_path: Path, run_args: list[str]) -> None:
    exam = write_exam(tmp_path / "exams" / "exam_a", shape=(400, 300), seed=3)
    plain = runner.invoke(app, ["predict", str(exam), *run_args])
    first = PredictionResult.model_validate_json(plain.stdout)
    other = _site_for(first, tmp_path, sha_change="d" * 64)
    out_file = tmp_path / "out.jsonl"
    refused = runner.invoke(app, ["predict", str(exam), *run_args, "--site", str(other),
                                  "-o", str(out_file)])
    assert refused.exit_code == 2, refused.stderr
    changed = sorted(w.name for w in first.weights)[0]
    assert "other_site.json: fitted on other weights than this run's" in refused.stderr
    assert changed in refused.stderr and "sha256 dddddddddddd in the site file" in refused.stderr
    assert "mammocli calibrate" in refused.stderr  # the hint
    assert not out_file.exists()  # refused before any exam was written
    # a file that is no site file at all: exit 3 before discovery
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = runner.invoke(app, ["predict", str(tmp_path / "missing"), *run_args, "--site", str(bad)])
    assert r.exit_code == 3 and "not a mammocli site file" in r.stderr


def test_results_of_schema_2_0_without_site_outputs_still_read() -> None:
    doc = {"exam_id": "x", "family": "dmv-cnn", "model": "view-wise", "views": {},
           "predictions": {"image_only": {"left": {"benign": 0.1, "malignant": 0.2},
                                          "right": {"benign": 0.1, "malignant": 0.3}}},
           "primary_variant": "image_only", "device": "cpu", "seed": 0, "rng_mode": "exam",
           "tta": 1, "duration_s": 0.1, "weights": [], "mammocli_version": "0.1.0",
           "schema_version": "1.0", "status": "ok"}
    r = PredictionResult.model_validate(doc)
    assert r.site is None and r.header is None
