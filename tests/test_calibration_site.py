"""site.json: `mammocli calibrate` writes it, applying it to a result equals applying the fit by
hand, a result of other weights (or a CSV-fitted site file) is refused with a clear error, and the
file is versioned."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mammocli.analysis.site import SiteMismatchError, load_site
from mammocli.cli.app import app
from mammocli.errors import InputError
from mammocli.outputs.schema import PredictionResult

runner = CliRunner()
WEIGHTS = [{"name": "sample_patch_model.p", "sha256": "a" * 64},
           {"name": "sample_imageheatmaps_model.p", "sha256": "b" * 64, "path": "/opt/w.p"}]


def result(exam: str, left: float, right: float,
           weights: list[dict[str, str]] | None = None) -> dict[str, Any]:
    probs = {"left": {"benign": 0.1, "malignant": left},
             "right": {"benign": 0.2, "malignant": right}}
    return {"exam_id": exam, "family": "dmv-cnn", "model": "view-wise", "views": {},
            "predictions": {"image_and_heatmaps": probs}, "primary_variant": "image_and_heatmaps",
            "device": "cpu", "seed": 0, "rng_mode": "exam", "tta": 1, "duration_s": 0.1,
            "weights": WEIGHTS if weights is None else weights, "mammocli_version": "0.1.0"}


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Path, Path]:
    """60 exams of results (JSON Lines) with overconfident low scores, and their labels."""
    rng = np.random.default_rng(0)
    z = rng.normal(-2.0, 1.2, (60, 2))
    y = (rng.random((60, 2)) < 1 / (1 + np.exp(-z))).astype(int)
    y[0] = [1, 0]  # at least a few malignant breasts whatever the draw
    y[1] = [0, 1]
    scores = 1 / (1 + np.exp(-(1.5 * z - 1.0)))
    results = tmp_path / "results.jsonl"
    with results.open("w") as f:
        for i in range(60):
            f.write(json.dumps(result(f"e{i}", scores[i, 0], scores[i, 1])) + "\n")
        f.write(json.dumps({"status": "failed", "exam_id": "e99", "error": "missing view",
                            "exit_code": 3}) + "\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("exam_id,side,label\n" + "".join(
        f"e{i},{side},{y[i, j]}\n" for i in range(60) for j, side in enumerate("LR")))
    return results, labels


def calibrate(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["calibrate", *args])


@pytest.mark.parametrize("method", ["logistic", "isotonic"])
def test_site_round_trip_equals_the_fit_by_hand(labelled: tuple[Path, Path], tmp_path: Path,
                                                method: str) -> None:
    results, labels = labelled
    site_path = tmp_path / "site.json"
    r = calibrate("--predictions", str(results), "--labels", str(labels), "-o", str(site_path),
                  "--method", method, "--target-specificity", "0.9", "--recall-rate", "0.2",
                  "--n-bootstrap", "50", "--folds", "3", "--plots", str(tmp_path / "plots"))
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""  # the site file went to -o; tables went to stderr
    assert "operating points" in r.stderr and "Brier" in r.stderr
    doc = json.loads(site_path.read_text())
    assert doc["format"] == "mammocli-site" and doc["version"] == "1.0"
    assert doc["model"] == {"family": "dmv-cnn", "kind": "view-wise",
                            "variant": "image_and_heatmaps", "weights": [
        {"name": "sample_imageheatmaps_model.p", "sha256": "b" * 64},
        {"name": "sample_patch_model.p", "sha256": "a" * 64}]}  # hashes, never the path
    assert "/opt" not in site_path.read_text()
    assert doc["data"]["n_exams"] == 60 and doc["data"]["n_breasts"] == 120
    assert doc["data"]["failed_predictions"] == 1
    assert doc["data"]["predictions"] == "results.jsonl"  # a name, not a full path
    assert [op["name"] for op in doc["operating_points"]] == [
        "exam specificity 0.9", "breast specificity 0.9", "exam recall_rate 0.2",
        "breast recall_rate 0.2"]
    image = Image.open(io.BytesIO((tmp_path / "plots" / "reliability.png").read_bytes()))
    assert image.format == "PNG"

    site = load_site(site_path)
    new = PredictionResult.model_validate(result("new", 0.031, 0.42))
    out = site.apply(new)
    # the fit by hand, from the numbers in the file
    fit = doc["calibration"]
    raw = np.array([0.031, 0.42])
    if method == "logistic":
        by_hand = 1 / (1 + np.exp(-(fit["slope"] * np.log(raw / (1 - raw)) + fit["intercept"])))
    else:
        by_hand = np.interp(raw, fit["x"], fit["y"])
    c = out.calibrated_malignant
    assert [c.left, c.right] == pytest.approx(by_hand.tolist(), abs=1e-12)
    assert c.exam == max(c.left, c.right)
    for flag, op in zip(out.flags, doc["operating_points"], strict=True):
        t = op["threshold"]["estimate"]
        assert flag.operating_point == op["name"] and flag.threshold == t
        assert (flag.left, flag.right, flag.exam) == (0.031 >= t, 0.42 >= t, 0.42 >= t)
    assert any(f.exam for f in out.flags) and not all(f.left for f in out.flags)
    # the raw probabilities of the result are untouched
    assert new.primary.left.malignant == 0.031


def test_a_site_file_for_other_weights_is_refused(labelled: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    results, labels = labelled
    site_path = tmp_path / "site.json"
    r = calibrate("--predictions", str(results), "--labels", str(labels), "-o", str(site_path),
                  "--n-bootstrap", "0", "-q")
    assert r.exit_code == 0, r.stderr
    site = load_site(site_path)
    other = [dict(WEIGHTS[0]), {"name": "sample_imageheatmaps_model.p", "sha256": "c" * 64}]
    with pytest.raises(SiteMismatchError) as info:
        site.apply(PredictionResult.model_validate(result("x", 0.1, 0.2, other)))
    message = str(info.value)
    assert message.startswith("site.json: fitted on other weights than this result's")
    assert "sample_imageheatmaps_model.p: sha256 cccccccccccc in the result, sha256 " \
           "bbbbbbbbbbbb in the site file" in message
    assert "sample_patch_model.p" not in message  # only the file that differs
    assert info.value.exit_code == 2 and info.value.hint and "mammocli calibrate" in info.value.hint
    # a result that names no weights at all, and one of another model
    with pytest.raises(SiteMismatchError, match="absent in the result"):
        site.apply(PredictionResult.model_validate(result("x", 0.1, 0.2, [])))
    image_wise = result("x", 0.1, 0.2)
    image_wise["model"] = "image-wise"
    with pytest.raises(SiteMismatchError, match="fitted for the view-wise model of dmv-cnn"):
        site.apply(PredictionResult.model_validate(image_wise))


def test_a_site_file_fitted_on_a_csv_reports_but_is_never_applied(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = ["exam_id,side,score,label"]
    for i in range(40):
        for side in "LR":
            label = int(rng.random() < 0.2) if i > 1 else int(side == "L")
            rows.append(f"e{i},{side},{rng.random() * 0.5 + 0.4 * label:.4f},{label}")
    csv_path = tmp_path / "scores.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    r = calibrate("--predictions", str(csv_path), "--labels", str(csv_path), "-o",
                  str(tmp_path / "site.json"), "--n-bootstrap", "0", "--folds", "2", "-q")
    assert r.exit_code == 0, r.stderr
    assert "name no weights" in r.stderr
    site = load_site(tmp_path / "site.json")
    assert site.model is None and any("cannot be applied" in w for w in site.warnings)
    with pytest.raises(SiteMismatchError, match="site.json: fitted on predictions that name no"):
        site.apply(PredictionResult.model_validate(result("x", 0.1, 0.2)))


def test_site_file_version_and_validity(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    results, labels = labelled
    site_path = tmp_path / "site.json"
    assert calibrate("--predictions", str(results), "--labels", str(labels), "-o",
                     str(site_path), "--n-bootstrap", "0", "-q").exit_code == 0
    doc = json.loads(site_path.read_text())
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**doc, "version": "2.0"}))
    with pytest.raises(InputError, match="newer.json: site file version '2.0'"):
        load_site(newer)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**doc, "calibration": {"method": "logistic", "slope": "x",
                                                         "intercept": 0}}))
    with pytest.raises(InputError, match=r"broken.json: not a valid site file \(calibration"):
        load_site(broken)
    other = tmp_path / "result.json"
    other.write_text(json.dumps(result("e0", 0.1, 0.2)))
    with pytest.raises(InputError, match="result.json: not a mammocli site file"):
        load_site(other)
    # the minor version may grow: a 1.x file still reads
    minor = tmp_path / "minor.json"
    minor.write_text(json.dumps({**doc, "version": "1.3"}))
    assert load_site(minor).calibration == load_site(site_path).calibration


def test_calibrate_cli_output_rules_and_errors(labelled: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    results, labels = labelled
    site_path = tmp_path / "site.json"
    site_path.write_text("keep me")
    r = calibrate("--predictions", str(results), "--labels", str(labels), "-o", str(site_path))
    assert r.exit_code == 2 and "exists" in r.stderr and "--overwrite" in r.stderr
    assert site_path.read_text() == "keep me"
    r = calibrate("--predictions", str(results), "--labels", str(labels),
                  "--target-sensitivity", "1.2", "-q")
    assert r.exit_code == 2 and "--target-sensitivity 1.2 is outside 0-1" in r.stderr
    # stdout carries the site file when there is no -o
    r = calibrate("--predictions", str(results), "--labels", str(labels), "--n-bootstrap", "0",
                  "--target-sensitivity", "0.5", "-q")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["operating_points"][0]["target"] == {"kind": "sensitivity",
                                                                     "value": 0.5}
    # results of two different weights cannot make one site file
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(results.read_text() + json.dumps(
        result("z", 0.1, 0.2, [WEIGHTS[0]])) + "\n")
    r = calibrate("--predictions", str(mixed), "--labels", str(labels), "-q")
    assert r.exit_code == 3 and "mixed.jsonl, line 62: from another model" in r.stderr
