"""`mammocli predict` and `mammocli heatmaps` end to end on small synthetic exams."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.outputs.schema import ExamFailure, PredictionResult
from mammocli.synthetic.phantoms import phantom, write_exam, write_png16
from mammocli.views import Side

runner = CliRunner()


def predict(*args: str | Path):
    return runner.invoke(app, ["predict", *map(str, args)])


@pytest.fixture()
def exam(tmp_path: Path) -> Path:
    return write_exam(tmp_path / "exam_a", shape=(400, 300), seed=3)


@pytest.fixture()
def base_args(random_weights: Path, small_pipeline: Path) -> list[str]:
    return ["--weights-dir", str(random_weights), "--pipeline-config", str(small_pipeline),
            "--tta", "2"]


def test_predict_prints_valid_json_and_keeps_stdout_clean(exam: Path, base_args) -> None:
    result = predict(exam, *base_args)
    assert result.exit_code == 0, result.stderr
    data = PredictionResult.model_validate_json(result.stdout)  # stdout is only the result
    assert data.exam_id == "exam_a"
    assert data.primary_variant == "image_and_heatmaps"
    assert set(data.predictions) == {"image_only", "image_and_heatmaps"}
    for variant in data.predictions.values():
        for p in (variant.left.benign, variant.left.malignant, variant.right.malignant):
            assert 0.0 < p < 1.0
    assert [r.source for r in data.views["R-MLO"]] == ["R_MLO.png"]
    assert data.views["R-CC"][0].flipped and not data.views["L-CC"][0].flipped
    assert data.views["L-CC"][0].orientation_from == "auto"
    assert {w.name for w in data.weights} == {
        "sample_patch_model.p", "sample_image_model.p", "sample_imageheatmaps_model.p"}
    assert data.tta == 2 and data.seed == 0 and data.rng_mode == "exam"
    assert "device: cpu" in result.stderr


def test_seed_and_rng_modes(tmp_path: Path, base_args) -> None:
    root = tmp_path / "root"
    write_exam(root / "e1", shape=(400, 300), seed=5)
    shutil.copytree(root / "e1", root / "e2")
    per_exam = predict(root, *base_args, "--variants", "image-only")
    assert per_exam.exit_code == 0, per_exam.stderr
    lines = [json.loads(x) for x in per_exam.stdout.splitlines()]  # JSON Lines
    assert [x["exam_id"] for x in lines] == ["e1", "e2"]
    assert lines[0]["predictions"] == lines[1]["predictions"]  # each exam starts from the seed
    run = predict(root, *base_args, "--variants", "image-only", "--rng-stream", "run")
    run_lines = [json.loads(x) for x in run.stdout.splitlines()]
    assert run_lines[0]["predictions"] == lines[0]["predictions"]
    assert run_lines[1]["predictions"] != lines[1]["predictions"]  # one continuing stream
    other_seed = predict(root / "e1", *base_args, "--variants", "image-only", "--seed", "1")
    assert json.loads(other_seed.stdout)["predictions"] != lines[0]["predictions"]


def _bad_exams(root: Path) -> None:
    write_exam(root / "good", shape=(400, 300), seed=7)
    write_exam(root / "missing_view", shape=(400, 300), seed=8)
    (root / "missing_view" / "R_MLO.png").unlink()
    write_exam(root / "truncated", shape=(400, 300), seed=9)
    data = (root / "truncated" / "L_CC.png").read_bytes()
    (root / "truncated" / "L_CC.png").write_bytes(data[: len(data) // 3])
    write_exam(root / "blank", shape=(400, 300), seed=10)
    write_png16(root / "blank" / "R_CC.png", np.zeros((400, 300), dtype=np.uint16))
    write_exam(root / "tiny", shape=(400, 300), seed=11)
    rng = np.random.default_rng(0)
    write_png16(root / "tiny" / "L_MLO.png", phantom((16, 12), rng, facing=Side.RIGHT))
    write_exam(root / "not_image", shape=(400, 300), seed=12)
    (root / "not_image" / "R_CC.png").write_text("this is not a PNG")
    write_exam(root / "colour", shape=(400, 300), seed=13)
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(root / "colour" / "L_CC.png")


def test_bad_exams_fail_alone_with_clear_errors(tmp_path: Path, base_args) -> None:
    root = tmp_path / "root"
    _bad_exams(root)
    result = predict(root, *base_args, "--variants", "image-only")
    assert result.exit_code == 3
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    records = [json.loads(x) for x in result.stdout.splitlines()]
    by_id = {r["exam_id"]: r for r in records}
    assert by_id["good"]["status"] == "ok"
    PredictionResult.model_validate(by_id["good"])
    expected = {
        "missing_view": "missing view(s) R-MLO",
        "truncated": "L_CC.png: cannot read",
        "blank": "R_CC.png: no breast tissue",
        "tiny": "L_MLO.png: no breast tissue",
        "not_image": "R_CC.png: cannot read",
        "colour": "L_CC.png: RGB image",
    }
    for exam_id, message in expected.items():
        failure = ExamFailure.model_validate(by_id[exam_id])
        assert message in failure.error, exam_id
        assert failure.exit_code == 3
        assert message in result.stderr
    assert str(tmp_path) not in result.stderr  # relative names only


def test_output_folder_resume_overwrite_and_csv(tmp_path: Path, base_args) -> None:
    root = tmp_path / "root"
    write_exam(root / "e1", shape=(400, 300), seed=1)
    write_exam(root / "e2", shape=(400, 300), seed=2)
    out = tmp_path / "results"
    csv_path = tmp_path / "preds.csv"
    args = [*base_args, "--variants", "image-only", "-o", f"{out}/", "--csv", str(csv_path)]
    first = predict(root, *args)
    assert first.exit_code == 0, first.stderr
    assert first.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["e1.json", "e2.json"]
    e1 = PredictionResult.model_validate_json((out / "e1.json").read_text())
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "exam_id,left_benign,right_benign,left_malignant,right_malignant"
    assert rows[1] == "e1," + ",".join(f"{v:.4f}" for v in e1.primary.as_labels().values())
    again = predict(root, *args)
    assert again.exit_code == 2 and "--resume" in again.stderr
    (out / "e2.json").unlink()
    stamp = (out / "e1.json").stat().st_mtime_ns
    resumed = predict(root, *args, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert (out / "e2.json").exists() and (out / "e1.json").stat().st_mtime_ns == stamp
    single = tmp_path / "one.json"
    assert predict(root / "e1", *base_args, "--variants", "image-only", "-o", single
                   ).exit_code == 0
    assert predict(root / "e1", *base_args, "-o", single).exit_code == 2  # never overwritten
    assert predict(root / "e1", *base_args, "--variants", "image-only", "-o", single,
                   "--overwrite").exit_code == 0


def test_image_only_needs_no_patch_model(exam: Path, random_weights: Path, small_pipeline: Path,
                                         tmp_path: Path) -> None:
    partial = tmp_path / "w"
    partial.mkdir()
    shutil.copy(random_weights / "sample_image_model.p", partial)
    result = predict(exam, "--weights-dir", partial, "--pipeline-config", small_pipeline,
                     "--tta", "0", "--variants", "image-only")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["primary_variant"] == "image_only"
    missing = predict(exam, "--weights-dir", partial, "--pipeline-config", small_pipeline)
    assert missing.exit_code == 4
    assert "sample_patch_model.p" in missing.stderr


def test_image_wise_model(exam: Path, base_args) -> None:
    result = predict(exam, *base_args, "--model", "image-wise")
    assert result.exit_code == 0, result.stderr
    data = PredictionResult.model_validate_json(result.stdout)
    assert data.model == "image-wise"
    views = {v: r[0].predictions for v, r in data.views.items()}
    for variant, breast in data.predictions.items():
        left = [views["L-CC"][variant].malignant, views["L-MLO"][variant].malignant]
        assert breast.left.malignant == pytest.approx(np.mean(left))
    assert {w.name for w in data.weights} >= {"ImageOnly__ModeImage_weights.p",
                                              "ImageHeatmaps__ModeImage_weights.p"}


def test_usage_and_device_errors(exam: Path, base_args) -> None:
    assert predict(exam, *base_args, "--variants", "nonsense").exit_code == 2
    assert predict(exam, *base_args, "--tta", "-1").exit_code == 2
    result = predict(exam, *base_args, "--device", "cuda")
    assert result.exit_code == 5
    assert "torch build" in result.stderr


def test_heatmaps_command_writes_arrays_overlays_and_index(exam: Path, base_args,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "heat"
    args = [a for a in base_args if a not in ("--tta", "2")]
    result = runner.invoke(app, ["heatmaps", str(exam), "-o", str(out), *args])
    assert result.exit_code == 0, result.stderr
    index = json.loads((out / "exam_a" / "heatmaps.json").read_text())
    assert {i["view"] for i in index["images"]} == {"L-CC", "R-CC", "L-MLO", "R-MLO"}
    for item in index["images"]:
        arrays = np.load(out / "exam_a" / item["arrays"])
        top, bottom, left, right = item["crop_window"]
        assert arrays["benign"].shape == (bottom - top, right - left)
        assert 0 <= arrays["malignant"].min() and arrays["malignant"].max() <= 1
        with Image.open(out / "exam_a" / item["overlay"]) as im:
            assert im.format == "PNG" and im.size[0] > 300


def test_installed_entry_point(exam: Path, base_args) -> None:
    exe = Path(sys.executable).with_name("mammocli")
    assert exe.exists(), "the package must be installed (pip install -e .)"
    done = subprocess.run([str(exe), "predict", str(exam), *base_args, "--tta", "0",
                           "--variants", "image-only"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert PredictionResult.model_validate_json(done.stdout).exam_id == "exam_a"


def test_predict_downloads_verified_weights_on_first_use(exam: Path, random_weights: Path,
                                                         small_pipeline: Path, tmp_path: Path,
                                                         httpserver, monkeypatch) -> None:
    """The main job's real path: no --weights-dir, weights fetched from a (loopback) mirror,
    verified, cached, and reused without a second request."""
    from _weights_mirror import make_file_mirror

    make_file_mirror(tmp_path, httpserver, monkeypatch,
                     weights=sorted(random_weights.glob("*.p")), samples={})
    args = [exam, "--pipeline-config", small_pipeline, "--tta", "0"]
    first = predict(*args)
    assert first.exit_code == 0, first.stderr
    used = {w.name: w for w in PredictionResult.model_validate_json(first.stdout).weights}
    assert set(used) == {"sample_patch_model.p", "sample_image_model.p",
                         "sample_imageheatmaps_model.p"}
    cache = Path(used["sample_image_model.p"].path or "")
    assert cache.is_file() and random_weights not in cache.parents
    served = len(httpserver.log)
    assert served == 3
    second = predict(*args)
    assert second.exit_code == 0, second.stderr
    assert len(httpserver.log) == served  # cached: no new request
    assert json.loads(second.stdout)["predictions"] == json.loads(first.stdout)["predictions"]
