"""`mammocli reproduce --model gmic`: the plumbing against what the authors' code computed from the
harness's random weights (../shared/gmic/reference case a = their sample exam 0, model 1). The
shipped manifest holds their published numbers, which only the real weights can give."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _weights_mirror import make_file_mirror
from pytest_httpserver import HTTPServer
from test_gmic_fidelity import GMIC_REFERENCE_DIR
from typer.testing import CliRunner

from mammocli.analysis.reproduce import load_gmic_manifest
from mammocli.cli.app import app
from mammocli.weights.registry import builtin_registry

runner = CliRunner()


def test_the_shipped_manifest_is_exam_0_model_1_and_its_samples_are_registered() -> None:
    manifest, source = load_gmic_manifest()
    assert source == "builtin" and manifest.member == 1 and manifest.tolerance == 1e-4
    (exam,) = manifest.exams
    assert exam.id == "0" and [i.view.value for i in exam.images] == [
        "L-CC", "R-CC", "L-MLO", "R-MLO"]
    assert exam.images[1].expected == {"benign": 0.8929, "malignant": 0.3259}
    samples = {e.name: e for e in builtin_registry().samples}
    for image in exam.images:
        entry = samples[image.file]
        assert entry.commit == "594029efe6184bcca3a151fa1dd46c5fd620cb25"
        assert entry.path == f"sample_data/images/{image.file}"


def test_reproduce_gmic_compares_every_image_with_the_expected_values(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    if not GMIC_REFERENCE_DIR.is_dir():
        pytest.skip(f"GMIC reference not found at {GMIC_REFERENCE_DIR} (needs ../shared/gmic)")
    weights = tmp_path / "w"
    subprocess.run([sys.executable, str(GMIC_REFERENCE_DIR.parent / "make_weights.py"),
                    "--out-dir", str(weights), "--seed", "0", "--models", "1"],
                   check=True, capture_output=True)
    images = GMIC_REFERENCE_DIR / "inputs" / "images"
    names = ["0_L-CC", "0_R-CC", "0_L-MLO", "0_R-MLO"]
    make_file_mirror(tmp_path, httpserver, monkeypatch, [weights / "sample_model_1.p"],
                     {"gmic_exam_0": [images / f"{n}.png" for n in names]})
    with (GMIC_REFERENCE_DIR / "outputs" / "case_a_model1_predictions.csv").open() as fh:
        rows = {r["image_index"]: r for r in csv.DictReader(fh)}
    expected = {n: {"benign": float(rows[n]["benign_pred"]),
                    "malignant": float(rows[n]["malignant_pred"])} for n in names}
    expected["0_R-MLO"]["malignant"] += 0.01  # one wrong value: that row, and only it, fails
    manifest = tmp_path / "gmic.json"
    manifest.write_text(json.dumps({"tolerance": 1e-4, "member": 1, "exams": [{
        "id": "0", "horizontal_flip": "NO", "images": [
            {"file": f"{n}.png", "view": n[2:], "expected": expected[n]} for n in names]}]}))
    result = runner.invoke(app, ["reproduce", "--model", "gmic", "--manifest", str(manifest),
                                 "--device", "cpu", "-q"])
    assert result.exit_code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["compared"] == 8 and report["failed"] == 1
    (failed,) = [r for r in report["rows"] if not r["passed"]]
    assert (failed["case"], failed["label"]) == ("exam 0 R-MLO", "malignant")
    assert failed["diff"] == pytest.approx(-0.01, abs=1e-4)
    assert {r["variant"] for r in report["rows"]} == {"gmic_1"}
    assert "1 of 8 values" in result.stderr
