"""Device names: a name that is no device is a usage error (exit 2); a device this machine
lacks is a device error (exit 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.errors import ConfigError, DeviceError
from mammocli.inference.devices import select_device
from mammocli.parallel import parse_devices
from mammocli.synthetic.phantoms import write_exam

runner = CliRunner()


@pytest.mark.parametrize("name", ["gpu", "cuda0", "cuda:x", "cuda:-1", "cpu:0", "", "tpu"])
def test_a_name_that_is_no_device_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown device") as error:
        select_device(name)
    assert error.value.exit_code == 2
    assert "cuda:N" in (error.value.hint or "")


def test_known_names_still_select_or_name_the_missing_device() -> None:
    assert select_device(" CPU ") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError):
            select_device("cuda:0")


def test_devices_list_with_a_typo_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'gpu'"):
        parse_devices("cpu,gpu")


def test_predict_device_typo_exits_2_before_any_work(tmp_path: Path) -> None:
    exam = write_exam(tmp_path / "e1", shape=(200, 150), seed=1)
    # No weights are given: the device is checked before they are looked for.
    result = runner.invoke(app, ["predict", str(exam), "--device", "gpu", "--weights-dir",
                                 str(tmp_path / "none")])
    assert result.exit_code == 2, result.stderr
    assert "unknown device 'gpu'" in result.stderr
    assert "Traceback" not in result.stderr
