"""Weights per model: `--weights-dir` at a training export that holds only the patch model takes
the other files from the verified cache, and the pipeline sizes come from its model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _weights_mirror import cache_dir, make_file_mirror
from conftest import SMALL_PIPELINE_YAML
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.config import PipelineConfig
from mammocli.errors import ConfigError, WeightsError
from mammocli.synthetic.phantoms import write_exam, write_random_weights
from mammocli.weights import resolve_weights, sha256_file
from mammocli.weights.card import MODEL_CARD, card_sizes, with_trained_sizes

runner = CliRunner()
PATCH = "sample_patch_model.p"
SMALL = {"cc_window": [268, 194], "mlo_window": [297, 175], "crop_iterations": 10,
         "crop_buffer": 5, "patch_size": 64, "patch_stride": 32, "heatmap_batch_size": 32,
         "max_crop_noise": [10, 10], "max_crop_size_noise": 10}


def _export(folder: Path, patch_source: Path, **pipeline: object) -> Path:
    """A training export as `mammocli train --config` of task patch writes it: the patch model
    and a card whose config records the pipeline sizes it was trained at."""
    folder.mkdir(parents=True)
    (folder / PATCH).write_bytes(patch_source.read_bytes())
    sizes = {**dict.fromkeys(SMALL), **pipeline}  # as PipelineSizes dumps: unset keys null
    (folder / MODEL_CARD).write_text(json.dumps({
        "task": "patch", "weights": {"files": {PATCH: sha256_file(folder / PATCH)}},
        "config": {"task": "patch", "pipeline": sizes}}))
    return folder


@pytest.fixture()
def mirror(tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch,
           random_weights: Path) -> Path:
    """The five random files served by a loopback mirror (the "official" files of the cache)."""
    make_file_mirror(tmp_path, httpserver, monkeypatch, sorted(random_weights.glob("*.p")), {})
    return random_weights


def _predict(exam: Path, *args: str | Path) -> dict:
    result = runner.invoke(app, ["predict", str(exam), "--tta", "1", "-q", *map(str, args)])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_export_with_only_the_patch_model_takes_the_rest_from_the_cache(
        tmp_path: Path, mirror: Path) -> None:
    trained = write_random_weights(tmp_path / "trained", seed=3)
    export = _export(tmp_path / "run" / "export", trained / PATCH, **SMALL)
    exam = write_exam(tmp_path / "exam", shape=(200, 150), seed=1)
    # No --pipeline-config: the card's small sizes are what make this run on a 200 x 150 exam.
    result = _predict(exam, "--weights-dir", export, "--variants", "image-and-heatmaps")
    used = {w["name"]: w for w in result["weights"]}
    assert Path(used[PATCH]["path"]) == export / PATCH  # from the export
    assert used[PATCH]["sha256"] == sha256_file(trained / PATCH)
    heat = used["sample_imageheatmaps_model.p"]  # from the verified cache (downloaded)
    assert Path(heat["path"]) == cache_dir() / "sample_imageheatmaps_model.p"
    assert heat["sha256"] == sha256_file(mirror / "sample_imageheatmaps_model.p")


def test_card_sizes_change_the_run(tmp_path: Path, mirror: Path, small_pipeline: Path) -> None:
    export = _export(tmp_path / "export", mirror / PATCH, **{**SMALL, "crop_buffer": 25})
    same_by_hand = tmp_path / "buffer25.yaml"
    same_by_hand.write_text(SMALL_PIPELINE_YAML.replace("crop_buffer: 5", "crop_buffer: 25"))
    exam = write_exam(tmp_path / "exam", shape=(200, 150), seed=2)
    common = ("--variants", "image-only")

    from_card = _predict(exam, "--weights-dir", export, *common)
    by_hand = _predict(exam, "--pipeline-config", same_by_hand, *common)
    small = _predict(exam, "--pipeline-config", small_pipeline, *common)

    def crops(result: dict) -> list:
        return [img["crop_window"] for images in result["views"].values() for img in images]

    assert crops(from_card) == crops(by_hand) != crops(small)
    assert from_card["predictions"] == by_hand["predictions"]


def test_card_and_pipeline_config_must_agree(tmp_path: Path, random_weights: Path) -> None:
    export = _export(tmp_path / "export", random_weights / PATCH, **{**SMALL, "crop_buffer": 25})
    agree = tmp_path / "agree.yaml"
    agree.write_text("crop_buffer: 25\ntta: 3\nheatmap_batch_size: 7\n")
    config = with_trained_sizes(PipelineConfig(tta=3, crop_buffer=25, heatmap_batch_size=7),
                                agree, export, {})
    # The card's sizes, what only the YAML sets, and no batch size taken from a card.
    assert (config.crop_buffer, config.patch_size, config.cc_window) == (25, 64, (268, 194))
    assert (config.tta, config.heatmap_batch_size) == (3, 7)
    disagree = tmp_path / "disagree.yaml"
    disagree.write_text("crop_buffer: 5\n")
    with pytest.raises(ConfigError, match="crop_buffer = 5.*trained at crop_buffer = 25") as err:
        with_trained_sizes(PipelineConfig(crop_buffer=5), disagree, export, {})
    assert err.value.exit_code == 2 and "remove crop_buffer" in (err.value.hint or "")


def test_cards_of_override_files_count_and_must_agree(tmp_path: Path,
                                                      random_weights: Path) -> None:
    a = _export(tmp_path / "a", random_weights / PATCH, patch_size=64)
    b = _export(tmp_path / "b", random_weights / PATCH, patch_size=96)
    config = with_trained_sizes(PipelineConfig(), None, None, {PATCH: str(b / PATCH)})
    assert config.patch_size == 96 and config.crop_buffer == PipelineConfig().crop_buffer
    with pytest.raises(ConfigError, match="disagree on patch_size"):
        with_trained_sizes(PipelineConfig(), None, a, {PATCH: str(b / PATCH)})
    assert with_trained_sizes(PipelineConfig(), None, random_weights, {}) == PipelineConfig()


def test_a_damaged_card_is_named(tmp_path: Path) -> None:
    (tmp_path / MODEL_CARD).write_text("{not json")
    with pytest.raises(ConfigError, match=MODEL_CARD):
        card_sizes(tmp_path / MODEL_CARD)


def test_weights_dir_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="is not a folder") as err:
        resolve_weights("patch", weights_dir=tmp_path / "nowhere")
    assert err.value.exit_code == 4


def test_the_python_api_reads_the_card_too(tmp_path: Path, mirror: Path) -> None:
    """`mammocli.predict(weights_dir=EXPORT)` runs at the card's sizes, as the CLI does."""
    import mammocli
    from mammocli.outputs.schema import to_json

    export = _export(tmp_path / "export", mirror / PATCH, **{**SMALL, "crop_buffer": 25})
    exam = write_exam(tmp_path / "exam", shape=(200, 150), seed=2)
    cli = _predict(exam, "--weights-dir", export, "--variants", "image-only")
    [record] = mammocli.predict(exam, weights_dir=export, variants=["image-only"], tta=1,
                                device="cpu")
    assert record.status == "ok"
    api = json.loads(to_json(record))
    crops = [[img["crop_window"] for images in r["views"].values() for img in images]
             for r in (cli, api)]
    assert crops[0] == crops[1]
    assert api["predictions"] == cli["predictions"]
