"""Exact resume: stop after N optimiser steps, resume, and get the very weights of an
uninterrupted run with the same seed (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from _train_helpers import breast_config, model_state

from mammocli.errors import ConfigError
from mammocli.synthetic.datasets import write_breast_dataset
from mammocli.train.config import TrainConfig, parse_config
from mammocli.train.loop import train
from mammocli.train.tasks import build_model


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 8 exams -> 6 train (3 steps of 2 per epoch), 2 val.
    return write_breast_dataset(tmp_path_factory.mktemp("resume"), 8, shape=(120, 90), seed=5,
                                contrast=0.5, radius_fraction=0.12)


def _config(doc: dict[str, object], where: Path) -> TrainConfig:
    return parse_config(yaml.safe_dump(doc), str(where), where)


def test_resume_gives_identical_weights(tmp_path: Path, manifest: Path) -> None:
    full = train(_config(breast_config(manifest, tmp_path / "full"), tmp_path),
                 show_progress=False)
    assert full.finished and full.position.step == 6

    # Stop in the middle of epoch 2 (step 4 of 6), then resume without the limit.
    doc = breast_config(manifest, tmp_path / "split", max_steps=4)
    first = train(_config(doc, tmp_path), show_progress=False)
    assert not first.finished
    assert first.position.step == 4 and first.position.epoch == 1
    assert first.export_path is None
    doc.pop("max_steps")
    resumed = train(_config(doc, tmp_path), resume=True, show_progress=False)
    assert resumed.finished and resumed.position.step == 6

    a = model_state(tmp_path / "full" / "last.pt")
    b = model_state(tmp_path / "split" / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The optimiser moved the weights (the test would be vacuous otherwise).
    init = build_model(_config(breast_config(manifest, tmp_path / "x"), tmp_path))[0].state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a if k.endswith("weight"))

    # The metrics logs agree too: one line per epoch.
    lines_a = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text()
               .splitlines()]
    lines_b = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text()
               .splitlines()]
    assert [x["epoch"] for x in lines_b] == [1, 2]
    for x, y in zip(lines_a, lines_b, strict=True):
        assert x["train_loss"] == y["train_loss"]
        assert x["auroc"] == y["auroc"]


def test_existing_run_needs_resume(tmp_path: Path, manifest: Path) -> None:
    doc = breast_config(manifest, tmp_path / "run", epochs=1, max_steps=1)
    train(_config(doc, tmp_path), show_progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(_config(doc, tmp_path), show_progress=False)


def test_resume_without_checkpoint_is_config_error(tmp_path: Path, manifest: Path) -> None:
    doc = breast_config(manifest, tmp_path / "none", epochs=1)
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(_config(doc, tmp_path), resume=True, show_progress=False)
