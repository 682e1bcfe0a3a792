"""`model.init: {from: registered, name: NAME}` starts training from weights registered with
`mammocli weights register NAME FILE` (SHA-256 checked)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.errors import ConfigError, WeightsError
from mammocli.models.loading import read_state_dict
from mammocli.synthetic.phantoms import write_random_weights
from mammocli.train.config import InitFrom, parse_config
from mammocli.train.tasks import initial_state

runner = CliRunner()
PATCH_TEXT = "task: patch\ndata: {train: m.csv}\noutput_dir: out\n"


def test_registered_init_reads_the_registered_file(tmp_path: Path) -> None:
    weights = write_random_weights(tmp_path / "w", seed=2)
    mine = weights / "sample_patch_model.p"
    assert runner.invoke(app, ["weights", "register", "my-patch", str(mine)]).exit_code == 0
    cfg = parse_config(PATCH_TEXT + "model:\n  init: {from: registered, name: my-patch}\n",
                       "cfg.yaml", tmp_path)
    assert cfg.model.init.from_ is InitFrom.REGISTERED
    state, source = initial_state(cfg)
    assert source == str(mine.resolve())
    want = read_state_dict(mine)
    assert state is not None and state.keys() == want.keys()
    assert all(torch.equal(state[k], want[k]) for k in want)

    mine.write_bytes(b"changed")
    with pytest.raises(WeightsError, match="changed since registration"):
        initial_state(cfg)
    unknown = parse_config(PATCH_TEXT + "model:\n  init: {from: registered, name: nobody}\n",
                           "cfg.yaml", tmp_path)
    with pytest.raises(WeightsError, match="no weights registered"):
        initial_state(unknown)


@pytest.mark.parametrize("init", ["{from: registered}", "{from: official, name: my-patch}"])
def test_name_goes_with_registered_only(tmp_path: Path, init: str) -> None:
    with pytest.raises(ConfigError, match="model.init"):
        parse_config(PATCH_TEXT + f"model:\n  init: {init}\n", "cfg.yaml", tmp_path)
