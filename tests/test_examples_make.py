"""`mammocli examples make DIR`: the demo folder, its refusal to write into a used folder, and
training configs that load and find their data."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mammocli.api import load_pipeline_config
from mammocli.cli.app import app
from mammocli.errors import ConfigError, OutputError
from mammocli.io.discover import discover_exams
from mammocli.synthetic.demo import TRAIN_CONFIGS, make_demo
from mammocli.train.config import load_config
from mammocli.train.manifest import read_breast_manifest, read_patch_manifest

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("d") / "demo"
    make_demo(folder)
    return folder


def test_the_demo_holds_exams_datasets_configs_and_tables(demo: Path) -> None:
    assert len(discover_exams(demo / "exam")) == 1
    assert sorted(e.exam_id for e in discover_exams(demo / "root")) == [
        "exam1", "exam2", "exam3", "exam4"]
    assert load_pipeline_config(demo / "pipeline.yaml").patch_size == 32
    assert len(read_patch_manifest(demo / "data" / "patches" / "manifest.csv")) == 8
    assert len(read_breast_manifest(demo / "data" / "exams" / "manifest.csv")) == 8
    labels = list(csv.DictReader((demo / "labels.csv").open()))
    scores = list(csv.DictReader((demo / "scores.csv").open()))
    assert {r["label"] for r in labels} == {"0", "1"}  # both classes: AUCs are defined
    assert len(scores) == 2 * len(labels) and {r["reader"] for r in scores} == {
        "reader_a", "reader_b"}


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_each_training_config_loads_and_finds_its_manifest(demo: Path, name: str) -> None:
    config = load_config(demo / name)
    assert config.data.train.is_file() and config.data.train.is_relative_to(demo)
    assert config.output_dir.is_relative_to(demo)


def test_a_used_folder_is_refused_and_overwrite_keeps_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not empty"):
        make_demo(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt"]
    cli = runner.invoke(app, ["examples", "make", str(folder)])
    assert cli.exit_code == 2 and "--overwrite" in cli.stderr
    cli = runner.invoke(app, ["examples", "make", str(folder), "--overwrite"])
    assert cli.exit_code == 0, cli.stderr
    assert (folder / "mine.txt").read_text() == "keep me"
    assert (folder / "exam" / "L_CC.png").is_file()
    # what was written and what to run next
    assert "train_patch.yaml" in cli.stderr and f"mammocli predict {folder.as_posix()}/exam/" \
        in cli.stderr


def test_a_missing_manifest_says_how_to_get_data(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("task: patch\ndata: {train: data/patches/manifest.csv}\noutput_dir: o\n")
    with pytest.raises(ConfigError, match="manifest not found") as err:
        read_patch_manifest(load_config(config).data.train)
    assert "mammocli examples make DIR" in (err.value.hint or "")


def test_patch_set_cropped_to_tissue_as_predict_crops(tmp_path: Path) -> None:
    # The same draws with and without the crop: the cropped images and masks are the
    # uncropped ones cut to the tissue's bounding box plus the margin.
    import numpy as np
    from PIL import Image

    from mammocli.synthetic.datasets import write_patch_dataset

    write_patch_dataset(tmp_path / "full", 3, shape=(120, 90), seed=1)
    write_patch_dataset(tmp_path / "crop", 3, shape=(120, 90), seed=1, crop_margin=3)
    masks = 0
    for full_png in sorted((tmp_path / "full").glob("*.png")):
        full = np.asarray(Image.open(full_png))
        crop = np.asarray(Image.open(tmp_path / "crop" / full_png.name))
        image = np.asarray(Image.open(tmp_path / "full" / (full_png.name[:6] + ".png")))
        ys, xs = np.nonzero(image)
        box = (slice(max(ys.min() - 3, 0), ys.max() + 4), slice(max(xs.min() - 3, 0),
                                                                 xs.max() + 4))
        assert crop.size < full.size and np.array_equal(crop, full[box])
        masks += int("_" in full_png.stem and bool(crop.any()))
    assert masks >= 2  # lesion masks survive the crop
    cropped = np.asarray(Image.open(tmp_path / "crop" / "img000.png"))
    uncropped = np.asarray(Image.open(tmp_path / "full" / "img000.png"))
    assert (cropped > 0).mean() > (uncropped > 0).mean() + 0.2


def test_the_preview_script_trains_at_the_demo_pipelines_patch_size(tmp_path: Path) -> None:
    # examples/make_preview.py: its training config loads, and its patch size is the one the
    # demo's pipeline.yaml gives predict (a mismatch would fail the heatmap stage).
    import importlib.util

    import yaml

    script = Path(__file__).parents[1] / "examples" / "make_preview.py"
    spec = importlib.util.spec_from_file_location("make_preview", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(module.TRAIN_PATCH))
    config = load_config(tmp_path / "train.yaml")
    assert config.task == "patch" and config.model.init.from_.value == "random"
    demo = make_demo(tmp_path / "demo")
    assert config.pipeline.patch_size == load_pipeline_config(
        demo.folder / "pipeline.yaml").patch_size
    assert module.HEATMAP_STRIDE < load_pipeline_config(demo.folder / "pipeline.yaml").patch_stride
