"""Fine-tuning from (random) weights in the official formats: loads, trains, exports in the
official formats, and the export runs unchanged in `mammocli predict --weights-dir`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from _train_helpers import TINY_PIPELINE, breast_config, write_config
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.models.loading import load_patch_classifier, load_view_wise
from mammocli.synthetic.datasets import write_breast_dataset, write_patch_dataset
from mammocli.synthetic.phantoms import write_random_weights

runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_weights(tmp_path_factory.mktemp("weights"), seed=1)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_breast_dataset(tmp_path_factory.mktemp("ft"), 6, shape=(120, 90), seed=2,
                                contrast=0.5, radius_fraction=0.12)


def _summary(output: str) -> dict[str, object]:
    return json.loads(output[output.index("{"):])


@pytest.mark.parametrize("variant", ["image-only", "image-and-heatmaps"])
def test_finetune_export_predict(tmp_path: Path, weights: Path, manifest: Path,
                                 variant: str) -> None:
    doc = breast_config(manifest, tmp_path / "run", epochs=1,
                        model={"variant": variant,
                               "init": {"from": "official", "weights_dir": str(weights)}},
                        optimizer={"lr": 1e-4})
    result = runner.invoke(app, ["train", "--config", str(write_config(tmp_path / "c.yaml", doc)),
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    summary = _summary(result.stdout)
    assert summary["finished"] is True
    export = tmp_path / "run" / "export"
    name = "sample_image_model.p" if variant == "image-only" else "sample_imageheatmaps_model.p"
    assert summary["export"] == str(export / name)

    # Official format: {"model": state_dict} with all six ResNet prefixes.
    raw = torch.load(export / name, map_location="cpu", weights_only=True)
    assert set(raw) == {"model"}
    prefixes = {k.split(".")[1] for k in raw["model"] if k.startswith("four_view_resnet.")}
    assert prefixes == {"cc", "mlo", "l_cc", "r_cc", "l_mlo", "r_mlo"}
    model = load_view_wise(export / name)
    original = load_view_wise(weights / name)
    assert not torch.equal(model.fc1_cc.weight, original.fc1_cc.weight)  # it trained

    card = json.loads((export / "model_card.json").read_text())
    assert card["weights"]["initialised_from"].endswith(name)
    assert name in card["weights"]["files"]
    assert card["data"]["train_exams"] == 4 and card["data"]["val_exams"] == 2
    assert card["config"]["model"]["variant"] == variant.replace("-", "_")  # the one vocabulary
    if variant == "image-and-heatmaps":
        assert (export / "sample_patch_model.p").is_file()  # heatmaps' model travels along
        assert any((manifest.parent / "cache" / "heatmaps").iterdir())  # computed once, cached
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "auroc" in json.loads(lines[0])

    # The export, used unchanged by predict at the same (small) sizes.
    sizes = tmp_path / "pipeline.yaml"
    sizes.write_text(yaml.safe_dump(TINY_PIPELINE))
    exam = manifest.parent / "exam000"
    pred = runner.invoke(app, ["predict", str(exam), "--weights-dir", str(export),
                               "--variants", variant, "--pipeline-config", str(sizes),
                               "--tta", "2", "--device", "cpu", "--quiet"])
    assert pred.exit_code == 0, pred.output
    out = json.loads(pred.stdout)
    assert out["exam_id"] == "exam000"
    key = variant.replace("-", "_")
    assert 0 <= out["predictions"][key]["left"]["malignant"] <= 1


def test_patch_finetune_exports_bare_densenet(tmp_path: Path, weights: Path) -> None:
    manifest = write_patch_dataset(tmp_path / "data", 4, shape=(96, 72), seed=4, contrast=0.5)
    doc = {
        "task": "patch",
        "data": {"train": str(manifest), "val_fraction": 0.25,
                 "patches": {"malignant": 2, "benign": 2, "outside": 1, "negative": 2},
                 "val_patches_per_image": 2},
        "output_dir": str(tmp_path / "run"),
        "model": {"init": {"from": "official", "weights_dir": str(weights)}},
        "optimizer": {"lr": 1e-4},
        "pipeline": {"patch_size": 32},
        "epochs": 1, "batch_size": 8, "device": "cpu",
    }
    result = runner.invoke(app, ["train", "--config",
                                 str(write_config(tmp_path / "p.yaml", doc)), "--quiet"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "run" / "export" / "sample_patch_model.p"
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert "classifier.weight" in raw and "model" not in raw  # bare state dict, as the authors'
    assert any(k.endswith("denselayer1.norm1.weight") for k in raw)  # torchvision key names
    trained = load_patch_classifier(path)
    original = load_patch_classifier(weights / "sample_patch_model.p")
    assert not torch.equal(trained.classifier.weight, original.classifier.weight)


def test_patch_from_checkpoint_with_accumulation_and_amp(tmp_path: Path, weights: Path) -> None:
    """Init from a checkpoint file, gradient accumulation, bf16 autocast on CPU, cosine schedule
    with warm-up: runs to the end and exports."""
    manifest = write_patch_dataset(tmp_path / "data", 4, shape=(96, 72), seed=6, contrast=0.5)
    doc = {
        "task": "patch",
        "data": {"train": str(manifest), "val_fraction": 0.25,
                 "patches": {"malignant": 2, "benign": 2, "outside": 1, "negative": 2},
                 "val_patches_per_image": 2},
        "output_dir": str(tmp_path / "run"),
        "model": {"init": {"from": "checkpoint", "path": str(weights / "sample_patch_model.p")},
                  "freeze_bn": True},
        "optimizer": {"name": "sgd", "lr": 1e-3},
        "schedule": {"name": "cosine", "warmup_steps": 1},
        "pipeline": {"patch_size": 32},
        "epochs": 1, "batch_size": 4, "grad_accum": 2, "amp": True, "device": "cpu",
    }
    result = runner.invoke(app, ["train", "--config",
                                 str(write_config(tmp_path / "p.yaml", doc)), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = _summary(result.stdout)
    assert summary["finished"] is True and summary["steps"] >= 1
    assert (tmp_path / "run" / "export" / "sample_patch_model.p").is_file()
