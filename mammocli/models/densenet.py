"""The patch classifier: DenseNet-121 with TensorFlow "SAME" padding (SPEC 5.3).

Module and parameter names match torchvision's `densenet121`, so the official state dict loads
unchanged. Only the two stride-2 layers (conv0, pool0) need asymmetric SAME padding; the 3x3/1
convolutions' SAME padding equals PyTorch's padding=1. The authors' F.pad call swaps height and
width padding; that has no effect on square patches, and we pad correctly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

GROWTH = 32
BN_SIZE = 4
BLOCKS = (6, 12, 24, 16)
INIT_FEATURES = 64
NUM_CLASSES = 4
# Softmax outputs: index 0 = malignant heatmap, index 1 = benign heatmap (SPEC 5.1).
MALIGNANT_CLASS = 0
BENIGN_CLASS = 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


class SamePadConv(nn.Conv2d):
    """A stride-s convolution with TensorFlow SAME zero padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _same_pad(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class SamePadMaxPool(nn.MaxPool2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Zero padding (as the authors') is harmless here: the input is post-ReLU.
        k = self.kernel_size if isinstance(self.kernel_size, int) else self.kernel_size[0]
        s = self.stride if isinstance(self.stride, int) else self.stride[0]
        if all(_ceil_mode_is_same(n, k, s) for n in x.shape[-2:]):
            # SAME padding only at the bottom/right: ceil_mode's clipped last window takes the
            # same max without copying the (large) padded activation. Bit-identical for x >= 0.
            return F.max_pool2d(x, k, s, ceil_mode=True)
        return F.max_pool2d(_same_pad(x, k, s), k, s)


def _ceil_mode_is_same(size: int, kernel: int, stride: int) -> bool:
    before, after = same_padding(size, kernel, stride)
    ceil_out = -(-(size - kernel) // stride) + 1
    return before == 0 and after < stride and ceil_out == -(-size // stride)


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom))


class _DenseLayer(nn.Module):
    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_features, BN_SIZE * GROWTH, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(BN_SIZE * GROWTH)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(BN_SIZE * GROWTH, GROWTH, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` is the concatenation of all earlier features."""
        x = self.conv1(self.relu1(self.norm1(x)))
        out: torch.Tensor = self.conv2(self.relu2(self.norm2(x)))
        return out


class _DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, in_features: int) -> None:
        super().__init__()
        for i in range(layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(in_features + i * GROWTH))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torchvision's form, which autograd needs. Inference runs `InferencePatchClassifier`
        # (densenet_inference.py), which writes into one buffer instead of concatenating.
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_features, out_features, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class PatchClassifier(nn.Module):
    """DenseNet-121, 4 classes, eval-mode BN; returns logits (softmax is the caller's)."""

    def __init__(self, input_channels: int = 3) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=SamePadConv(input_channels, INIT_FEATURES, 7, stride=2, bias=False),
            norm0=nn.BatchNorm2d(INIT_FEATURES),
            relu0=nn.ReLU(inplace=True),
            pool0=SamePadMaxPool(3, 2),
        )
        features = INIT_FEATURES
        for i, count in enumerate(BLOCKS):
            layers[f"denseblock{i + 1}"] = _DenseBlock(count, features)
            features += count * GROWTH
            if i != len(BLOCKS) - 1:
                layers[f"transition{i + 1}"] = _Transition(features, features // 2)
                features //= 2
        layers["norm5"] = nn.BatchNorm2d(features)
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(features, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.features(x))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        logits: torch.Tensor = self.classifier(h)
        return logits
