"""ResNet-22 with pre-activation blocks: the per-view column of the breast models (SPEC 6.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .elementwise import add_to_fresh_output, relu_fresh_output

PLANES = (16, 32, 64, 128, 256)
STRIDES = (1, 2, 2, 2, 2)
BLOCKS_PER_STAGE = 2
FEATURES = PLANES[-1]


class BasicBlockV2(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int, downsample: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.downsample = (
            nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False))
            if downsample else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place ReLU and sum on fresh outputs: bit-identical, fewer full-size allocations.
        a = relu_fresh_output(self.bn1(x))
        # The shortcut comes from the pre-activated input when there is a projection.
        shortcut = self.downsample(a) if self.downsample is not None else x
        h = self.conv1(a)
        h = self.conv2(relu_fresh_output(self.bn2(h)))
        return add_to_fresh_output(h, shortcut)


class ResNet22(nn.Module):
    def __init__(self, input_channels: int) -> None:
        super().__init__()
        self.first_conv = nn.Conv2d(input_channels, PLANES[0], 7, stride=2, padding=0, bias=False)
        stages = []
        inplanes = PLANES[0]
        for planes, stride in zip(PLANES, STRIDES, strict=True):
            blocks = [BasicBlockV2(inplanes, planes, stride, downsample=True)]
            blocks += [BasicBlockV2(planes, planes, 1, downsample=False)
                       for _ in range(BLOCKS_PER_STAGE - 1)]
            stages.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layer_list = nn.ModuleList(stages)
        self.final_bn = nn.BatchNorm2d(FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> globally average-pooled features (N, 256)."""
        h = max_pool_3x3_stride_2(self.first_conv(x))
        for stage in self.layer_list:
            h = stage(h)
        h = relu_fresh_output(self.final_bn(h))
        return h.mean(dim=(2, 3))


def max_pool_3x3_stride_2(x: torch.Tensor) -> torch.Tensor:
    """`F.max_pool2d(x, 3, 2)` as a max over rows then columns of strided views: the same
    numbers (a max rounds nothing), ~4x faster on a large NCHW CPU tensor (where the pooling
    kernel took a quarter of the ResNet's time), as fast in NHWC, and no int64 index tensor."""
    if x.requires_grad:
        return F.max_pool2d(x, 3, 2)
    rows = (x.shape[-2] - 3) // 2 + 1
    cols = (x.shape[-1] - 3) // 2 + 1
    h = torch.maximum(x[..., 0:2 * rows - 1:2, :], x[..., 1:2 * rows:2, :])
    h = torch.maximum(h, x[..., 2:2 * rows + 1:2, :], out=h)
    out = torch.maximum(h[..., 0:2 * cols - 1:2], h[..., 1:2 * cols:2])
    return torch.maximum(out, h[..., 2:2 * cols + 1:2], out=out)
