"""GMIC through the product: `predict --model gmic` on DICOM and PNG exams, archive roots, -o DIR/,
--csv and --image-csv, the committed JSON Schema, the ensemble, the weights group.

GMIC's window is 2944 x 1920 whatever the image size and the network accepts no other (the
first round refuses other sizes), so every image costs ~2 s per member here: the CLI runs use
one member (`--gmic-models 1`) and are shared by the tests of this module; the ensemble is
checked on one image.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from _weights_mirror import blob_sha1
from dicom_factory import make_mg, save_mg
from pydicom.uid import generate_uid
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from mammocli.api import ModelRequest
from mammocli.cli.app import app
from mammocli.config import FlipMode, PipelineConfig
from mammocli.families import get_family
from mammocli.io.exam import ImageSource
from mammocli.io.load import read_view_image
from mammocli.outputs import schema
from mammocli.outputs.schema import PredictionResult
from mammocli.parallel import PredictorSpec
from mammocli.preprocess.prepare import prepare_image
from mammocli.synthetic.phantoms import phantom, write_png16, write_random_gmic_weights
from mammocli.views import VIEWS, Side, View
from mammocli.vocabulary import Family, ModelKind, Variant
from mammocli.weights.overrides import weights_locator

runner = CliRunner()
SHAPE = (400, 300)


@pytest.fixture(scope="module")
def gmic_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_gmic_weights(tmp_path_factory.mktemp("gmic_weights"), members=(1, 2))


def _exams(root: Path) -> tuple[Path, Path, Path]:
    """The same four images as a 16-bit PNG exam and a 12-bit DICOM study, plus a PNG exam
    whose R-MLO is missing, beside the good one (a root of two exams)."""
    rng = np.random.default_rng(7)
    study = generate_uid()
    png, dicom, broken = root / "png_root" / "good", root / "dicom", root / "png_root" / "broken"
    for i, view in enumerate(VIEWS):
        facing = Side.RIGHT if view.side is Side.LEFT else Side.LEFT
        png16 = phantom(SHAPE, rng, facing=facing, lesion=view is View.R_CC)
        values12 = np.round(png16.astype(np.float64) * 4095 / 65535).astype(np.uint16)
        name = f"{view.side.letter}_{view.angle.value}.png"
        write_png16(png / name, png16)
        if view is not View.R_MLO:
            write_png16(broken / name, png16)
        ds, _ = make_mg(view.side.letter, view.angle.value, pixels=values12, bits=12,
                        study_uid=study, instance_number=i + 1)
        save_mg(ds, dicom / f"IM{i:04d}")
    return png, dicom, broken


@dataclass
class Runs:
    root: Path
    png: dict  # the good exam's result, from the root run
    dicom: dict
    out_dir: Path
    exit_png_root: int
    stderr_png_root: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, gmic_weights: Path,
         small_pipeline: Path) -> Runs:
    root = tmp_path_factory.mktemp("gmic_exams")
    png, dicom, _ = _exams(root)
    # The small pipeline only makes the crop cheap: GMIC's family sets its own window.
    args = ["--model", "gmic", "--gmic-models", "1", "--weights-dir", str(gmic_weights),
            "--pipeline-config", str(small_pipeline), "--threads", "2", "-q"]
    out_dir = root / "results"
    from_root = runner.invoke(app, ["predict", str(png.parent), *args, "-o", f"{out_dir}/",
                                    "--csv", str(root / "breasts.csv"),
                                    "--image-csv", str(root / "images.csv")])
    from_dicom = runner.invoke(app, ["predict", str(dicom), *args])
    assert from_dicom.exit_code == 0, from_dicom.stderr
    return Runs(root, json.loads((out_dir / "good.json").read_text()),
                json.loads(from_dicom.stdout), out_dir, from_root.exit_code, from_root.stderr)


def test_dicom_and_png_exams_give_the_same_numbers(runs: Runs) -> None:
    png, dicom = runs.png, runs.dicom
    assert png["family"] == dicom["family"] == "gmic" and png["model"] == "gmic"
    assert dicom["predictions"] == png["predictions"]
    for view in VIEWS:
        (p,), (d,) = png["views"][view.value], dicom["views"][view.value]
        assert d["predictions"] == p["predictions"]
        assert d["outputs"] == p["outputs"]  # boxes, attention, y_global, y_local
        assert d["crop_window"] == p["crop_window"] and d["flipped"] == p["flipped"]
    assert png["tta"] == 0 and png["primary_variant"] == "gmic_1"
    assert [w["name"] for w in png["weights"]] == ["sample_model_1.p"]


def test_per_image_outputs_and_breasts_are_the_mean_of_their_cc_and_mlo(runs: Runs) -> None:
    result = PredictionResult.model_validate(runs.png)
    for side in (Side.LEFT, Side.RIGHT):
        images = [result.views[View.of(side, a)][0].predictions[Variant.GMIC_1]
                  for a in (View.L_CC.angle, View.L_MLO.angle)]
        breast = getattr(result.primary, side.value)
        assert breast.malignant == pytest.approx((images[0].malignant + images[1].malignant) / 2,
                                                 abs=1e-7)
        assert breast.benign == pytest.approx((images[0].benign + images[1].benign) / 2,
                                              abs=1e-7)
    assert "mean of its CC and MLO" in result.outputs["breast_rule"]
    for view in VIEWS:
        image = result.views[view][0]
        height, width = SHAPE
        member = image.outputs["members"]["1"]
        assert len(member["patches"]) == 6
        assert sum(p["attention"] for p in member["patches"]) == pytest.approx(1, abs=1e-5)
        for patch in member["patches"]:  # inside the stored image, at most 256 x 256
            top, bottom, left, right = patch["box"]
            assert 0 <= top <= bottom <= height and 0 <= left <= right <= width
            assert bottom - top <= 256 and right - left <= 256
        assert set(member) == {"patches", "y_global", "y_local"}


def test_a_root_with_one_bad_exam_gives_the_others_results_dir_and_csvs(runs: Runs) -> None:
    assert runs.exit_png_root == 3, runs.stderr_png_root  # InputError for the broken exam
    broken = json.loads((runs.out_dir / "broken.json").read_text())
    assert broken["status"] == "failed" and "R-MLO" in broken["error"]
    assert runs.png["status"] == "ok"
    with (runs.root / "breasts.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["exam_id"] for r in rows] == ["good"]
    assert float(rows[0]["left_malignant"]) == pytest.approx(
        runs.png["predictions"]["gmic_1"]["left"]["malignant"], abs=5e-5)
    with (runs.root / "images.csv").open() as fh:
        images = list(csv.DictReader(fh))
    assert [(r["exam_id"], r["view"]) for r in images] == [("good", v.value) for v in VIEWS]
    for row in images:
        ours = runs.png["views"][row["view"]][0]
        assert row["file"] == ours["source"] and row["variant"] == "gmic_1"
        assert float(row["malignant"]) == pytest.approx(
            ours["predictions"]["gmic_1"]["malignant"], abs=5e-5)


def test_the_result_fits_the_committed_json_schema(runs: Runs) -> None:
    committed = json.loads(schema.SCHEMA_FILE.read_text("utf-8"))
    assert committed == schema.json_schema()
    defs = committed["$defs"]
    assert "gmic" in defs["Family"]["enum"] and "gmic" in defs["ModelKind"]["enum"]
    assert {"gmic_1", "gmic_5", "gmic_ensemble"} <= set(defs["Variant"]["enum"])
    ok = defs["PredictionResult"]
    assert set(ok["required"]) <= set(runs.png) and set(runs.png) <= set(ok["properties"])
    image = defs["ImageReport"]
    assert set(runs.png["views"]["L-CC"][0]) <= set(image["properties"])
    assert PredictionResult.model_validate(runs.dicom).model_dump(mode="json") == runs.dicom


def test_ensemble_is_the_mean_of_the_members_run_one_by_one(gmic_weights: Path,
                                                          tmp_path: Path) -> None:
    write_png16(tmp_path / "L_CC.png", phantom(SHAPE, np.random.default_rng(3)))
    family = get_family(Family.GMIC)
    locate = weights_locator(gmic_weights, {}, progress=False)
    config = family.preparation(PipelineConfig.small())
    source = ImageSource(path=tmp_path / "L_CC.png", relative="L_CC.png", view=View.L_CC)
    image = [prepare_image(read_view_image(source), FlipMode.AUTO, config)]

    def members(*variants: Variant):  # type: ignore[no-untyped-def]
        return family.load(ModelKind.GMIC, variants, locate, torch.device("cpu"), config)

    both, extras = members(Variant.GMIC_1, Variant.GMIC_2).predict_images(image)
    one, _ = members(Variant.GMIC_1).predict_images(image)
    two, _ = members(Variant.GMIC_2).predict_images(image)
    assert set(both) == {Variant.GMIC_1, Variant.GMIC_2, Variant.GMIC_ENSEMBLE}
    np.testing.assert_array_equal(both[Variant.GMIC_1], one[Variant.GMIC_1])
    np.testing.assert_array_equal(both[Variant.GMIC_2], two[Variant.GMIC_2])
    np.testing.assert_allclose(both[Variant.GMIC_ENSEMBLE],
                               (one[Variant.GMIC_1] + two[Variant.GMIC_2]) / 2, atol=1e-7)
    assert set(extras[0]) == {"1", "2"}


def test_gmic_options_are_checked_before_any_work(tmp_path: Path) -> None:
    for args, message in (
            (["--gmic-models", "1,6"], "unknown GMIC model '6'"),
            (["--gmic-models", "1", "--variants", "image-only"], "--variants is for the DMV"),
    ):
        result = runner.invoke(app, ["predict", str(tmp_path), "--model", "gmic", *args])
        assert result.exit_code == 2 and message in result.stderr, result.stderr
    result = runner.invoke(app, ["predict", str(tmp_path), "--gmic-models", "1"])
    assert result.exit_code == 2 and "--gmic-models needs --model gmic" in result.stderr


# --- weights ------------------------------------------------------------------------------------


def _gmic_mirror(tmp_path: Path, server: HTTPServer, monkeypatch: pytest.MonkeyPatch,
                 serve_wrong: bool = False) -> dict[str, bytes]:
    """Five GMIC-named entries (with size and SHA-256, as the real ones) and a DMV-CNN one."""
    import hashlib

    rng = np.random.default_rng(0)
    files = {f"sample_model_{i}.p": rng.bytes(50_000 + i) for i in range(1, 6)}
    files["sample_patch_model.p"] = rng.bytes(1000)
    entries = []
    for i, (name, data) in enumerate(files.items(), start=1):
        gmic = name.startswith("sample_model_")
        entries.append({"name": name, "alias": f"gmic-{i}" if gmic else "patch",
                        "path": f"models/{name}", "role": "test", "licence": "AGPL-3.0",
                        "git_sha1": blob_sha1(data),
                        **({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                           if gmic else {})})
        served = data[:-1] + bytes([data[-1] ^ 1]) if serve_wrong else data
        server.expect_request(f"/models/{name}").respond_with_data(served)
    manifest = tmp_path / "registry.json"
    manifest.write_text(json.dumps({"commit": "0" * 40, "weights": entries}))
    monkeypatch.setenv("MAMMOCLI_REGISTRY", str(manifest))
    monkeypatch.setenv("MAMMOCLI_WEIGHTS_URL", server.url_for("/"))
    monkeypatch.setenv("MAMMOCLI_DOWNLOAD_RETRIES", "0")
    return files


def _cached() -> list[str]:
    import os

    folder = Path(os.environ["MAMMOCLI_CACHE_DIR"]) / "weights"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_weights_download_gmic_fetches_and_verifies_the_five_members(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _gmic_mirror(tmp_path, httpserver, monkeypatch)
    result = runner.invoke(app, ["weights", "download", "gmic", "-q"])
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [e["name"] for e in listed] == [f"sample_model_{i}.p" for i in range(1, 6)]
    for entry in listed:
        assert Path(entry["path"]).read_bytes() == files[entry["name"]]
    assert "sample_patch_model.p" not in [p for p in _cached() if not p.endswith(".lock")]


def test_a_mirror_serving_wrong_bytes_is_refused_with_nothing_cached(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _gmic_mirror(tmp_path, httpserver, monkeypatch, serve_wrong=True)
    result = runner.invoke(app, ["weights", "download", "gmic", "-q"])
    assert result.exit_code == 4
    assert "sample_model_1.p" in result.stderr and "failed verification" in result.stderr
    assert [p for p in _cached() if not p.endswith(".lock")] == []


def test_predict_gmic_downloads_its_members_on_first_use(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `predict --model gmic` does without --weights-dir: each chosen member located
    through the verified cache (downloaded once), before any model is loaded."""
    files = _gmic_mirror(tmp_path, httpserver, monkeypatch)
    request = ModelRequest(family=Family.GMIC, kind=ModelKind.GMIC,
                           variants=(Variant.GMIC_1, Variant.GMIC_3))
    kind, variants, locate = request.resolved()
    spec = PredictorSpec.resolve(Family.GMIC, kind, variants, locate, PipelineConfig())
    assert {name: path.read_bytes() for name, path in spec.weights.items()} == {
        n: files[n] for n in ("sample_model_1.p", "sample_model_3.p")}
    assert [p for p in _cached() if p.endswith(".p")] == ["sample_model_1.p", "sample_model_3.p"]


def test_hybrid_and_evaluate_read_a_folder_of_gmic_results(runs: Runs) -> None:
    """`load_predictions` is what `hybrid` and `evaluate` read results with: the primary
    variant per breast, failed exams listed, not scored."""
    from mammocli.analysis.predictions import load_predictions
    from mammocli.analysis.tables import Columns

    scores = load_predictions(runs.out_dir, Columns())
    primary = runs.png["predictions"][runs.png["primary_variant"]]
    assert scores.malignant == {("good", "L"): primary["left"]["malignant"],
                                ("good", "R"): primary["right"]["malignant"]}
    assert scores.benign[("good", "R")] == primary["right"]["benign"]
    assert len(scores.failed) == 1 and "'broken' failed" in scores.failed[0]
