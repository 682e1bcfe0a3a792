"""Loading the official weight files (SPEC 7) into our modules, strictly.

Files are read with `torch.load(weights_only=True)`: no pickle code is ever executed. Accepted
variants: DenseNet keys in the torchvision <= 0.2 spelling (`norm.1`) or the current one
(`norm1`); BatchNorm `num_batches_tracked` present or absent; breast models wrapped in
`{"model": state_dict}` (the official format) or bare.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from ..errors import WeightsError
from .breast import ImageBreastModel, SplitBreastModel
from .densenet import PatchClassifier

_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
_FIRST_CONV = "four_view_resnet.cc.first_conv.weight"

M = TypeVar("M", bound=nn.Module)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an official (or our exported) weight file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path.name}: weight file not found at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise WeightsError(
            f"{path.name}: cannot be read as a PyTorch weight file ({type(exc).__name__})",
            hint="re-download it (`mammocli weights download`) or check the file",
        ) from exc
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path.name}: not a state dict of tensors")
    return {str(k): v for k, v in obj.items()}


def _normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        match = _OLD_DENSENET_KEY.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


def load_strict(model: M, state: Mapping[str, torch.Tensor], name: str) -> M:
    """Load with a precise error naming missing keys, unexpected keys and wrong shapes."""
    state = _normalise_keys(state)
    expected = model.state_dict()
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]  # absent in files from PyTorch < 0.4.1
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_summarise(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_summarise(wrong)}")
    if problems:
        raise WeightsError(
            f"{name}: does not match the {type(model).__name__} architecture; "
            + "; ".join(problems),
            hint="check that the file is the right one for this model "
            "(see `mammocli weights list`)",
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def _summarise(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_patch_classifier(path: Path) -> PatchClassifier:
    return load_strict(PatchClassifier(), read_state_dict(path), Path(path).name)


def _input_channels(state: Mapping[str, torch.Tensor], name: str) -> int:
    if _FIRST_CONV not in state:
        raise WeightsError(f"{name}: missing key {_FIRST_CONV}; not a breast-level model file")
    return int(state[_FIRST_CONV].shape[1])


B = TypeVar("B", SplitBreastModel, ImageBreastModel)


def _load_breast(path: Path, architecture: type[B], input_channels: int | None) -> B:
    """The number of input channels (1 image-only, 3 image+heatmaps) is read off the file."""
    state = read_state_dict(path)
    name = Path(path).name
    channels = _input_channels(state, name)
    _check_channels(name, channels, input_channels)
    return load_strict(architecture(channels), state, name)


def load_view_wise(path: Path, input_channels: int | None = None) -> SplitBreastModel:
    return _load_breast(path, SplitBreastModel, input_channels)


def load_image_wise(path: Path, input_channels: int | None = None) -> ImageBreastModel:
    return _load_breast(path, ImageBreastModel, input_channels)


def _check_channels(name: str, found: int, expected: int | None) -> None:
    if expected is not None and found != expected:
        kind = {1: "image-only", 3: "image+heatmaps"}
        raise WeightsError(
            f"{name}: a {kind.get(found, f'{found}-channel')} model, but the "
            f"{kind.get(expected, f'{expected}-channel')} variant was asked for"
        )
