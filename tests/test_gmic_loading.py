"""Loading GMIC weight files: weights_only, strict on our keys, exactly one extra key ignored
(SPEC 10.2 / 11), the official key layout (reference state_dict_keys.txt)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from mammocli.errors import WeightsError
from mammocli.models.gmic import GMIC, PERCENT_T
from mammocli.models.gmic_loading import (
    EXTRA_KEY,
    gmic_from_state_dict,
    load_gmic,
    member_file_name,
)

GMIC_DIR = Path(os.environ.get("MAMMOCLI_GMIC_REFERENCE_DIR",
                               Path(__file__).resolve().parents[2] / "shared" / "gmic"
                               / "reference")).parent


def _official_layout() -> OrderedDict[str, torch.Tensor]:
    state = OrderedDict(GMIC().state_dict())
    state[EXTRA_KEY] = torch.zeros((4, 4))
    return state


def test_extra_key_of_the_real_files_is_ignored_and_every_other_key_loaded(tmp_path) -> None:
    state = _official_layout()
    state["fusion_dnn.bias"] = torch.tensor([0.25, -0.5])
    path = tmp_path / "sample_model_4.p"
    torch.save(state, path)
    model = load_gmic(path, 4)
    assert torch.equal(model.fusion_dnn.bias, state["fusion_dnn.bias"])
    assert model.percent_t == PERCENT_T[4] and not model.training


@pytest.mark.parametrize("change, named", [
    (lambda s: s.pop("mil_attn_w.weight"), "missing keys: mil_attn_w.weight"),
    (lambda s: s.__setitem__("shared_rep_filter.bias", torch.zeros(2)),
     "unexpected keys: shared_rep_filter.bias"),
    (lambda s: s.__setitem__("fusion_dnn.weight", torch.zeros((2, 512))),
     "wrong shapes: fusion_dnn.weight"),
])
def test_any_other_missing_unexpected_or_misshapen_key_is_refused(change, named) -> None:
    state = _official_layout()
    change(state)
    with pytest.raises(WeightsError, match="sample_model_1.p") as info:
        gmic_from_state_dict(state, 1, "sample_model_1.p")
    assert named in str(info.value)


def test_pickled_code_is_never_run(tmp_path) -> None:
    path = tmp_path / "sample_model_1.p"
    torch.save({"model": GMIC()}, path)  # a whole module: needs unpickling code
    with pytest.raises(WeightsError, match="cannot be read"):
        load_gmic(path, 1)


def test_member_indices() -> None:
    assert [member_file_name(i) for i in PERCENT_T] == [f"sample_model_{i}.p" for i in range(1, 6)]
    with pytest.raises(WeightsError, match="index 6"):
        member_file_name(6)


def test_key_names_and_order_are_the_authors() -> None:
    listing = GMIC_DIR / "reference" / "outputs" / "state_dict_keys.txt"
    if not listing.is_file():
        pytest.skip(f"{listing} not found (needs ../shared/gmic)")
    keys = [line.split()[0] for line in listing.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert keys[-1] == EXTRA_KEY
    assert list(GMIC().state_dict()) == keys[:-1]


@pytest.fixture(scope="module")
def harness_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = GMIC_DIR / "make_weights.py"
    if not script.is_file():
        pytest.skip(f"{script} not found (needs ../shared/gmic)")
    out = tmp_path_factory.mktemp("gmic_weights")
    subprocess.run([sys.executable, str(script), "--out-dir", str(out), "--models", "1"],
                   check=True, capture_output=True)
    return out / "sample_model_1.p"


def test_file_in_the_official_format_loads_with_weights_only(harness_file: Path) -> None:
    raw = torch.load(harness_file, map_location="cpu", weights_only=True)
    assert EXTRA_KEY in raw and len(raw) == 259
    model = load_gmic(harness_file, 1)
    for key, value in model.state_dict().items():
        assert torch.equal(value, raw[key].reshape(value.shape)), key
