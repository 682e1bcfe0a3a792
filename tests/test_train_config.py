"""Bad training configs and manifests fail before training starts, naming the key or row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.errors import ConfigError, InputError
from mammocli.synthetic.datasets import write_breast_dataset, write_patch_dataset
from mammocli.train.config import InitFrom, Task, load_config, parse_config

runner = CliRunner()


@pytest.fixture(scope="module")
def breast_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_breast_dataset(tmp_path_factory.mktemp("breast"), 4, shape=(120, 90), seed=3)


def _write(tmp_path: Path, doc: dict[str, object]) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _base(manifest: Path, out: Path) -> dict[str, object]:
    return {"task": "breast", "data": {"train": str(manifest)}, "output_dir": str(out),
            "model": {"init": {"from": "random"}}, "epochs": 1}


def test_valid_config_resolves_relative_paths(tmp_path: Path) -> None:
    text = "task: patch\ndata:\n  train: data/m.csv\noutput_dir: runs/a\n" \
           "model:\n  init: {from: checkpoint, path: ck.pt}\n"
    cfg = parse_config(text, "cfg.yaml", tmp_path)
    assert cfg.task is Task.PATCH
    assert cfg.data.train == tmp_path / "data" / "m.csv"
    assert cfg.output_dir == tmp_path / "runs" / "a"
    assert cfg.model.init.from_ is InitFrom.CHECKPOINT
    assert cfg.model.init.path == tmp_path / "ck.pt"


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    text = "task: patch\ndata:\n  train: m.csv\n  trian_extra: 1\noutput_dir: out\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cfg.yaml", tmp_path)
    assert "line 4, data.trian_extra: unknown key" in err.value.message


def test_negative_lr_is_named(tmp_path: Path) -> None:
    text = "task: breast\ndata: {train: m.csv}\noutput_dir: o\noptimizer:\n  lr: -0.1\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "cfg.yaml", tmp_path)
    assert "line 5, optimizer.lr" in err.value.message
    assert "greater than 0" in err.value.message


def test_checkpoint_init_needs_a_path(tmp_path: Path) -> None:
    text = "task: breast\ndata: {train: m.csv}\noutput_dir: o\nmodel: {init: {from: checkpoint}}\n"
    with pytest.raises(ConfigError, match="model.init"):
        parse_config(text, "cfg.yaml", tmp_path)


def test_cli_unknown_key_exits_2(tmp_path: Path, breast_data: Path) -> None:
    doc = _base(breast_data, tmp_path / "out")
    doc["epochz"] = 3
    result = runner.invoke(app, ["train", "--config", str(_write(tmp_path, doc))])
    assert result.exit_code == 2, result.output
    assert "epochz: unknown key" in result.output
    assert not (tmp_path / "out").exists()


def test_cli_negative_lr_exits_2(tmp_path: Path, breast_data: Path) -> None:
    doc = _base(breast_data, tmp_path / "out")
    doc["optimizer"] = {"lr": -1}
    result = runner.invoke(app, ["train", "--config", str(_write(tmp_path, doc))])
    assert result.exit_code == 2
    assert "optimizer.lr" in result.output


def test_cli_missing_manifest_exits_2(tmp_path: Path) -> None:
    doc = _base(tmp_path / "nope.csv", tmp_path / "out")
    result = runner.invoke(app, ["train", "--config", str(_write(tmp_path, doc))])
    assert result.exit_code == 2
    assert "nope.csv: manifest not found" in result.output


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--config", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2


def test_manifest_row_with_missing_view_names_the_row(tmp_path: Path,
                                                      breast_data: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(breast_data.parent, data)
    (data / "exam002" / "R_MLO.png").unlink()
    doc = _base(data / "manifest.csv", tmp_path / "out")
    result = runner.invoke(app, ["train", "--config", str(_write(tmp_path, doc))])
    assert result.exit_code == 3, result.output
    assert "manifest.csv row 3 (exam002): missing view(s) R-MLO" in result.output
    assert not (tmp_path / "out" / "last.pt").exists()


def test_manifest_missing_file_and_bad_label(tmp_path: Path) -> None:
    from mammocli.train.manifest import read_breast_manifest, read_patch_manifest

    manifest = write_patch_dataset(tmp_path / "p", 2, shape=(80, 60), seed=0)
    text = manifest.read_text().splitlines()
    text[2] = "missing.png,,,p9"
    manifest.write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match="manifest.csv row 2: image missing.png not found"):
        read_patch_manifest(manifest)
    bad = tmp_path / "b.csv"
    bad.write_text("exam,left_benign,right_benign,left_malignant\nx,0,0,0\n")
    with pytest.raises(ConfigError, match="missing column"):
        read_breast_manifest(bad)


def test_load_config_reads_the_examples() -> None:
    root = Path(__file__).resolve().parents[1] / "examples"
    for name in ("train_patch.yaml", "train_breast.yaml"):
        cfg = load_config(root / name)
        assert cfg.output_dir.is_absolute()
