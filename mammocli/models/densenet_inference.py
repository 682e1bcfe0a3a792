"""The patch classifier rebuilt for inference: the same function as `PatchClassifier` in eval
mode, with fewer passes over memory. Two plans:

- exact (fp32 default): every convolution gets the same weights and bit-identical inputs, so
  outputs are bit-identical to the plain module. Only the elementwise work changes: each dense
  layer's norm1 is one fused multiply-add read straight from the block's shared feature buffer
  (with the scale and shift probed from `F.batch_norm` itself, so it rounds identically)
  instead of a dense copy followed by a normalisation pass.
- folded (bf16; `fold=True` in fp32): with eval-mode BatchNorm a per-channel affine map, a
  BatchNorm right after a convolution is folded into its weights and bias (conv0/norm0 and
  conv1/norm2 of every dense layer), the following ReLU runs inside the convolution (oneDNN
  post-op on CPU, where this CPU runs it for the dtype; else right after it), and each
  transition averages 2x2 before its 1x1 convolution rather than after (both linear, so they
  commute; the convolution then sees a quarter of the pixels).
  Outputs change by float rounding only, which the reference's random weights amplify to
  ~3e-5 per patch: above the fidelity tolerance, hence not the fp32 default.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from .densenet import (
    GROWTH,
    PatchClassifier,
    SamePadMaxPool,
    _DenseBlock,
    _DenseLayer,
    _same_pad,
    _Transition,
)
from .elementwise import relu_fresh_output

_Part = TypeVar("_Part", bound=nn.Module)


@dataclass
class _Affine:
    """Eval-mode BatchNorm as x * scale + shift (one fused multiply-add), then ReLU."""

    scale: torch.Tensor  # (1, C, 1, 1)
    shift: torch.Tensor

    def relu(self, x: torch.Tensor) -> torch.Tensor:
        # addcmul reads a strided channel slice and writes a dense channels_last result.
        return relu_fresh_output(torch.addcmul(self.shift, x, self.scale))


@dataclass
class _Conv:
    """A convolution with optional bias, optionally followed by a ReLU."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    stride: int = 1
    padding: int = 0
    relu: bool = False
    fused_relu: bool = False  # the ReLU as a oneDNN post-op (CPU)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.relu and self.fused_relu:
            return _fused_conv_relu(x, self.weight, self.bias, self.padding, self.stride)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return relu_fresh_output(y) if self.relu else y


@dataclass
class _Stem:
    conv: _Conv  # conv0 (folded: with norm0 and the ReLU)
    norm: _Affine | None  # norm0 + ReLU, unless folded
    pool: SamePadMaxPool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(_same_pad(x, 7, 2))
        out: torch.Tensor = self.pool(self.norm.relu(x) if self.norm else x)
        return out


@dataclass
class _DenseLayerPlan:
    norm1: _Affine
    conv1: _Conv  # folded: with norm2 and the ReLU
    norm2: _Affine | None  # norm2 + ReLU, unless folded
    conv2: _Conv

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(self.norm1.relu(features))
        return self.conv2(self.norm2.relu(hidden) if self.norm2 else hidden)


@dataclass
class _TransitionPlan:
    norm: _Affine
    conv: _Conv
    pool_first: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm.relu(x)
        if self.pool_first:
            return self.conv(F.avg_pool2d(x, 2, 2))
        return F.avg_pool2d(self.conv(x), 2, 2)


class InferencePatchClassifier(nn.Module):
    """Eval-mode `PatchClassifier` for one device and dtype; returns logits. Build it from a
    loaded classifier with `InferencePatchClassifier.build`."""

    def __init__(self, stem: _Stem, blocks: list[list[_DenseLayerPlan]],
                 transitions: list[_TransitionPlan], norm5: _Affine,
                 classifier: nn.Linear) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.transitions = transitions
        self.norm5 = norm5
        self.classifier = classifier

    @classmethod
    @torch.no_grad()
    def build(cls, model: PatchClassifier, device: torch.device,
              dtype: torch.dtype = torch.float32, *, fold: bool = False,
              fuse_relu: bool | None = None) -> InferencePatchClassifier:
        """`fold=False` is the exact plan, `fold=True` the folded one (see the module doc).
        The folded plan runs its ReLUs inside the convolutions where oneDNN can here
        (`fuse_relu=None`: probed once), else after them: the same numbers up to rounding."""
        if fuse_relu is None:
            fuse_relu = fused_conv_relu_available(device, dtype)
        fused_relu = fold and fuse_relu

        def tensor(t: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
            out = t.detach().to(device=device, dtype=dtype)
            return out.contiguous(memory_format=torch.channels_last) if channels_last else out

        def conv(module: nn.Conv2d, norm: nn.BatchNorm2d | None = None) -> _Conv:
            stride, padding = module.stride[0], module.padding[0]
            assert isinstance(padding, int)  # all of DenseNet's are explicit
            if norm is None:
                return _Conv(tensor(module.weight, True), stride=stride, padding=padding)
            scale, shift = _folding_terms(norm)
            weight = module.weight.double() * scale.view(-1, 1, 1, 1)
            return _Conv(tensor(weight, True), tensor(shift), stride=stride, padding=padding,
                         relu=True, fused_relu=fused_relu)

        def affine(norm: nn.BatchNorm2d) -> _Affine:
            scale, shift = _probed_terms(norm, device, dtype)
            return _Affine(scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1))

        def dense_layer(layer: _DenseLayer) -> _DenseLayerPlan:
            return _DenseLayerPlan(
                norm1=affine(layer.norm1),
                conv1=conv(layer.conv1, layer.norm2 if fold else None),
                norm2=None if fold else affine(layer.norm2),
                conv2=conv(layer.conv2))

        features = model.features
        norm0 = _part(features, "norm0", nn.BatchNorm2d)
        stem = _Stem(conv(_part(features, "conv0", nn.Conv2d), norm0 if fold else None),
                     None if fold else affine(norm0), _part(features, "pool0", SamePadMaxPool))
        blocks, transitions = [], []
        for i in range(4):
            block = _part(features, f"denseblock{i + 1}", _DenseBlock)
            blocks.append([dense_layer(layer) for layer in block.values()
                           if isinstance(layer, _DenseLayer)])
            if i < 3:
                transition = _part(features, f"transition{i + 1}", _Transition)
                transitions.append(_TransitionPlan(affine(transition.norm),
                                                   conv(transition.conv), pool_first=fold))
        classifier = nn.Linear(model.classifier.in_features, model.classifier.out_features)
        classifier.load_state_dict(model.classifier.state_dict())
        classifier.to(device=device, dtype=dtype)
        return cls(stem, blocks, transitions, affine(_part(features, "norm5", nn.BatchNorm2d)),
                   classifier).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, layers in enumerate(self.blocks):
            x = _dense_block(x, layers)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        x = self.norm5.relu(x)
        out: torch.Tensor = self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return out


def _dense_block(x: torch.Tensor, layers: list[_DenseLayerPlan]) -> torch.Tensor:
    """Each layer reads all earlier features from one buffer and writes its 32 channels."""
    batch, channels, height, width = x.shape
    buffer = torch.empty((batch, channels + len(layers) * GROWTH, height, width),
                         dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    buffer[:, :channels].copy_(x)
    for layer in layers:
        buffer[:, channels:channels + GROWTH].copy_(layer(buffer[:, :channels]))
        channels += GROWTH
    return buffer


def _part(parent: nn.Module, name: str, kind: type[_Part]) -> _Part:
    part = getattr(parent, name)
    assert isinstance(part, kind), (name, type(part))
    return part


def _probed_terms(norm: nn.BatchNorm2d, device: torch.device,
                  dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) exactly as `F.batch_norm` computes them for this device and dtype: the
    norm of 1 with zero mean and bias is the scale, the norm of 0 is the shift."""
    assert norm.running_mean is not None and norm.running_var is not None
    channels = norm.num_features
    params = [t.detach().to(device) for t in (norm.running_mean, norm.running_var,
                                              norm.weight, norm.bias)]
    mean, var, weight, bias = params
    probe = torch.ones((1, channels, 1, 1), device=device, dtype=dtype)
    scale = F.batch_norm(probe, torch.zeros_like(mean), var, weight, torch.zeros_like(bias),
                         False, 0.0, norm.eps)
    shift = F.batch_norm(probe * 0, mean, var, weight, bias, False, 0.0, norm.eps)
    return scale.flatten(), shift.flatten()


def _folding_terms(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of eval-mode BatchNorm in float64, for folding into a convolution."""
    assert norm.running_mean is not None and norm.running_var is not None
    scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
    return scale, norm.bias.double() - norm.running_mean.double() * scale


def _fused_conv_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     padding: int, stride: int) -> torch.Tensor:
    # A private op (oneDNN's convolution with a ReLU post-op): only called where
    # `fused_conv_relu_available` has run it once; otherwise the public ops do the same.
    out: torch.Tensor = torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, [padding] * 2, [stride] * 2, [1, 1], 1, "relu", [], "")
    return out


def fused_conv_relu_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the fused convolution + ReLU runs here for `dtype`. It depends on the CPU, not
    only on the torch build (its bf16 kernel needs avx512bw/vl/dq or avx_ne_convert), so a
    tiny call decides, once per dtype, and its result must match the unfused ops."""
    return device.type == "cpu" and _probe_fused_conv_relu(dtype)


@functools.cache
def _probe_fused_conv_relu(dtype: torch.dtype) -> bool:
    # torch leaves mkldnn.is_available unannotated
    mkldnn = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    if dtype not in (torch.float32, torch.bfloat16) or not mkldnn:
        return False
    mkldnn = getattr(torch.ops, "mkldnn", None)
    if mkldnn is None or not hasattr(mkldnn, "_convolution_pointwise"):
        return False
    x = torch.arange(-8, 8, dtype=dtype).view(1, 4, 2, 2).contiguous(
        memory_format=torch.channels_last)
    weight = torch.ones((2, 4, 1, 1), dtype=dtype).contiguous(memory_format=torch.channels_last)
    bias = torch.tensor([0.0, -20.0], dtype=dtype)
    try:
        fused = _fused_conv_relu(x, weight, bias, 0, 1)
    except (RuntimeError, NotImplementedError, TypeError):
        return False
    return bool(torch.equal(fused, torch.relu(F.conv2d(x, weight, bias))))
