"""GMIC's inference layout (issue 14, speed): channels_last convolution weights
(`prepare_for_inference`). Small windows, fast. The full-size
check against the authors' numbers is tests/test_gmic_fidelity.py, whose members are loaded
through the same path (`load_gmic_members`)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import yaml
from torch import nn

from mammocli.families.gmic_inference import load_gmic_members, run_member, to_precision
from mammocli.models.gmic import GMIC, GMICOutput, prepare_for_inference
from mammocli.models.gmic_loading import member_file_name
from mammocli.train.config import parse_config
from mammocli.train.tasks import build_model

WINDOW = (256, 192)
SMALL = {"window": WINDOW, "patch_size": 64, "num_patches": 3}
TOL = 1e-5  # the fidelity tolerance of issue 14


def _model(seed: int = 0) -> GMIC:
    """A small GMIC with BatchNorm statistics far from the identity, as trained ones are."""
    torch.manual_seed(seed)
    model = GMIC(0.05, **SMALL)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(seed)
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            bn.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.2)
            bn.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            bn.bias.data.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
    return model.eval()


def _windows(n: int = 3) -> torch.Tensor:
    return torch.randn((n, 1, *WINDOW), generator=torch.Generator().manual_seed(1))


def _max_diff(a: GMICOutput, b: GMICOutput, name: str) -> float:
    return float((getattr(a, name) - getattr(b, name)).abs().max())


def _layouts(model: GMIC) -> set[bool]:
    """Whether each convolution weight is channels_last (the 1x1 and single-channel ones,
    where both layouts are the same bytes, left out)."""
    return {c.weight.is_contiguous(memory_format=torch.channels_last)
            for c in model.modules() if isinstance(c, nn.Conv2d)
            and c.in_channels > 1 and c.kernel_size != (1, 1)}


def test_channels_last_model_equals_the_plain_one() -> None:
    plain = _model()
    fast = prepare_for_inference(copy.deepcopy(plain))
    assert _layouts(plain) == {False} and _layouts(fast) == {True}
    x = _windows()
    expected, got = run_member(plain, x), run_member(fast, x)
    assert got.roi_cells.tolist() == expected.roi_cells.tolist()
    assert got.patch_locations.tolist() == expected.patch_locations.tolist()
    for name in ("saliency", "y_global", "attention", "y_local", "y_fusion"):
        # float32 rounding only: two orders of magnitude inside the fidelity tolerance
        assert _max_diff(expected, got, name) <= TOL / 100, name
    assert got.saliency.is_contiguous()  # handed on in the ordinary layout


def test_the_state_dict_is_unchanged_and_preparing_twice_too() -> None:
    """Only the layout changes: the same keys and values (an export from a prepared member
    is still the official file), the same modules; a second call changes nothing."""
    plain = _model()
    once = prepare_for_inference(copy.deepcopy(plain))
    twice = prepare_for_inference(copy.deepcopy(once))
    for other in (once, twice):
        assert list(other.state_dict()) == list(plain.state_dict())
        for name, value in plain.state_dict().items():
            assert torch.equal(other.state_dict()[name], value), name
    assert [type(m) for m in once.modules()] == [type(m) for m in plain.modules()]
    assert not once.training


def test_loaded_members_and_precision_casts_are_prepared(tmp_path: Path) -> None:
    plain = _model()
    path = tmp_path / member_file_name(1)
    torch.save(plain.state_dict(), path)
    assert _layouts(load_gmic_members({1: path})[1]) == {True}
    cast = to_precision(copy.deepcopy(plain), torch.device("cpu"), torch.bfloat16)
    assert _layouts(cast) == {True}
    assert next(cast.parameters()).dtype == torch.bfloat16


def test_training_builds_the_plain_trainable_model(tmp_path: Path) -> None:
    """train task gmic is not given the inference layout: its model is built as before,
    every BatchNorm there and trainable, with exactly the official keys (what export writes)."""
    doc = {"task": "gmic", "data": {"train": str(tmp_path / "m.csv")},
           "output_dir": str(tmp_path / "o"), "model": {"init": {"from": "random"}},
           "gmic": {"window": [128, 128], "patch_size": 64, "num_patches": 2}}
    config = parse_config(yaml.safe_dump(doc), "train.yaml", tmp_path)
    model, _ = build_model(config)
    assert isinstance(model, GMIC)
    assert list(model.state_dict()) == list(GMIC().state_dict())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 41
    assert all(p.requires_grad for p in model.parameters())
    assert _layouts(model) == {False}
