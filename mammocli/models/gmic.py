"""GMIC (Shen et al. 2021): global network, saliency maps, ROI retrieval, local network, gated
attention and fusion (gmic/SPEC.md sections 4-9), written from the specification.

The module tree and attribute names give exactly the state-dict keys of the official files
(`ds_net.*`, `left_postprocess_net.*`, `dn_resnet.*`, `mil_attn_*`, `classifier_linear`,
`fusion_dnn`), so they load strictly. Forward is batched over images: the four views of an exam
go through a member in one call; every image's numbers are independent of the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .elementwise import add_to_fresh_output, relu_fresh_output
from .resnet22 import ResNet22, max_pool_3x3_stride_2

WINDOW = (2944, 1920)  # network input (H, W), the same for every view (SPEC 3.2)
SALIENCY_SIZE = (46, 30)  # one cell = 64 x 64 input pixels
NUM_PATCHES = 6  # K
PATCH_SIZE = 256
NUM_CLASSES = 2  # channel / column 0 = benign, 1 = malignant
# Top-t fraction per official member (SPEC 5); it changes y_global only, never y_fusion.
PERCENT_T = {1: 0.02, 2: 0.03, 3: 0.03, 4: 0.05, 5: 0.1}
MEMBERS = tuple(PERCENT_T)


@dataclass(frozen=True)
class GMICOutput:
    """Per image (batch dimension N first). Probabilities are (N, 2): benign, malignant."""

    saliency: torch.Tensor  # (N, 2, 46, 30) in (0, 1)
    y_global: torch.Tensor  # (N, 2): top-t mean of the saliency maps (not reported by the authors)
    roi_cells: torch.Tensor  # (N, K, 2) int64 upper-left saliency cells (row, col), selection order
    patch_locations: torch.Tensor  # (N, K, 2) int64 upper-left window pixels (row, col)
    attention: torch.Tensor  # (N, K) softmax weights of the patches
    y_local: torch.Tensor  # (N, 2) (not reported by the authors)
    y_fusion: torch.Tensor  # (N, 2): the prediction


class GlobalNetwork(ResNet22):
    """ResNet-22 v2 of SPEC 4: our DMV-CNN column with a padded first convolution and the
    feature map (N, 256, H/64, W/64) as output instead of its global average."""

    def __init__(self) -> None:
        super().__init__(input_channels=1)
        self.first_conv = nn.Conv2d(1, 16, 7, stride=2, padding=3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = max_pool_3x3_stride_2(self.first_conv(x))
        for stage in self.layer_list:
            h = stage(h)
        return relu_fresh_output(self.final_bn(h))


class SaliencyHead(nn.Module):
    """1x1 convolution to one map per class; registered as `left_postprocess_net`."""

    def __init__(self) -> None:
        super().__init__()
        self.gn_conv_last = nn.Conv2d(256, NUM_CLASSES, 1, bias=False)

    def forward(self, h_g: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gn_conv_last(h_g))


class BasicBlockV1(nn.Module):
    """Post-activation residual block (torchvision's ResNet-18 block)."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = (
            nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                          nn.BatchNorm2d(planes))
            if stride != 1 or inplanes != planes else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = relu_fresh_output(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        shortcut = self.downsample(x) if self.downsample is not None else x
        return relu_fresh_output(add_to_fresh_output(h, shortcut))


class LocalNetwork(nn.Module):
    """ResNet-18 trunk on 3-channel patches, then the spatial mean: (M, 3, S, S) -> (M, 512)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        inplanes = 64
        for index, planes in enumerate((64, 128, 256, 512), start=1):
            stride = 1 if index == 1 else 2
            layer = nn.Sequential(BasicBlockV1(inplanes, planes, stride),
                                  BasicBlockV1(planes, planes, 1))
            self.add_module(f"layer{index}", layer)
            inplanes = planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = relu_fresh_output(self.bn1(self.conv1(x)))
        h = F.max_pool2d(h, 3, stride=2, padding=1)
        for index in range(1, 5):
            h = getattr(self, f"layer{index}")(h)
        # Rows, then columns, as two means (SPEC 7): not one mean over both.
        return h.mean(dim=2).mean(dim=2)


def prepare_for_inference(model: GMIC) -> GMIC:
    """`model`, in place, as the inference paths run it: eval mode and channels_last
    convolution weights, so oneDNN's convolutions read and write NHWC without reordering
    to and from its blocked layout around every call (measured: one member on a four-view
    exam 3.9 -> 2.6 CPU s single-threaded, at the FLOP floor; benchmarks/bench_gmic.py).
    The values, the state dict and the outputs' layout are unchanged (tests/test_gmic_fast.py).

    BatchNorm folding was measured and left out: into the local network it saved nothing
    measurable and raised y_local's error against the reference from 1.3e-6 to 5.5e-6; into
    the global network's conv1 it flipped a near-tie of the ROI search (member 4, case a
    R-CC, margin 2.4e-7) and raised the saliency error to 8.5e-6, against 1e-5 allowed."""
    model.eval()
    for conv in model.modules():
        if isinstance(conv, nn.Conv2d):  # (Module.to's memory_format is untyped)
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    return model


def top_t_mean(saliency: torch.Tensor, percent_t: float) -> torch.Tensor:
    """y_global: per class the mean of the k largest cells, k = round(cells * t) (SPEC 5)."""
    n, c, h, w = saliency.shape
    k = max(1, int(round(h * w * percent_t)))  # >= 1: tiny training windows (full size: 28+)
    return saliency.reshape(n, c, h * w).topk(k, dim=2).values.mean(dim=2)


def retrieve_roi_cells(saliency: torch.Tensor, window: tuple[int, int] = WINDOW,
                       patch: int = PATCH_SIZE, count: int = NUM_PATCHES) -> torch.Tensor:
    """Greedy ROI search of SPEC 6 -> (N, K, 2) int64 upper-left cells (row, col).

    Both class maps are min-max normalised and summed; each step takes the first (row-major)
    maximum of the 4x4-cell average and zeroes that square. A constant channel gives NaN, and
    NaN then selects cell (0, 0) every time, as in the reference (kept, not "fixed")."""
    n, _, h, w = saliency.shape
    size = (int(round(patch * h / window[0])), int(round(patch * w / window[1])))
    low = saliency.amin(dim=(2, 3), keepdim=True)
    high = saliency.amax(dim=(2, 3), keepdim=True)
    normalised = (saliency - low) / (high - low)
    current = normalised.sum(dim=1, keepdim=True)  # (N, 1, h, w)
    pooled_w = w - size[1] + 1
    cells = torch.empty((n, count, 2), dtype=torch.int64)
    rows = torch.arange(h).view(1, 1, h, 1)
    cols = torch.arange(w).view(1, 1, 1, w)
    for k in range(count):
        pooled = F.avg_pool2d(current, size, stride=1)
        index = pooled.flatten(1).argmax(dim=1).cpu()
        r, c = index // pooled_w, index % pooled_w
        cells[:, k, 0], cells[:, k, 1] = r, c
        r, c = r.view(n, 1, 1, 1).to(rows.device), c.view(n, 1, 1, 1).to(cols.device)
        inside = ((rows >= r) & (rows < r + size[0]) & (cols >= c) & (cols < c + size[1]))
        # Multiply (not assign) so a NaN map stays NaN, as the reference's mask product does.
        current = current * (~inside).to(current.device, current.dtype)
    return cells


def cells_to_pixels(cells: torch.Tensor, saliency_size: tuple[int, int] = SALIENCY_SIZE,
                    window: tuple[int, int] = WINDOW) -> torch.Tensor:
    """Upper-left window pixel of each cell: round(r / h * H), round(c / w * W) in float64
    (= 64 r, 64 c for the default sizes)."""
    exact = cells.to(torch.float64) / torch.tensor(saliency_size, dtype=torch.float64)
    exact = exact * torch.tensor(window, dtype=torch.float64)
    return torch.round(exact).to(torch.int64)


def crop_patches(x: torch.Tensor, locations: torch.Tensor, size: int = PATCH_SIZE) -> torch.Tensor:
    """(N, 1, H, W) windows, (N, K, 2) upper-left pixels -> (N, K, size, size) patches.

    A patch overhanging the bottom/right is aligned to the bottom-right of its square and the rest
    filled with the window's minimum (SPEC 7; unreachable with the default sizes)."""
    n, _, height, width = x.shape
    k = locations.shape[1]
    out = x.new_empty((n, k, size, size))
    for i in range(n):
        fill = None
        for j in range(k):
            r0, c0 = (int(v) for v in locations[i, j])
            r1, c1 = min(max(r0 + size, 0), height), min(max(c0 + size, 0), width)
            r0, c0 = min(max(r0, 0), height), min(max(c0, 0), width)
            if r1 - r0 == size and c1 - c0 == size:
                out[i, j] = x[i, 0, r0:r1, c0:c1]
                continue
            if fill is None:
                fill = x[i].min()
            out[i, j] = fill
            out[i, j, size - (r1 - r0):, size - (c1 - c0):] = x[i, 0, r0:r1, c0:c1]
    return out


class GMIC(nn.Module):
    """The released model with the defaults. `window`, `patch_size` and `num_patches` may be
    changed for training at small sizes (the state-dict keys and shapes do not depend on them);
    the window must be a multiple of 64 (one saliency cell), the patch at least half a cell."""

    def __init__(self, percent_t: float = PERCENT_T[1], *, window: tuple[int, int] = WINDOW,
                 patch_size: int = PATCH_SIZE, num_patches: int = NUM_PATCHES) -> None:
        super().__init__()
        self.percent_t = percent_t
        self.window = (int(window[0]), int(window[1]))
        self.patch_size = int(patch_size)
        self.num_patches = int(num_patches)
        self.ds_net = GlobalNetwork()
        self.left_postprocess_net = SaliencyHead()
        self.dn_resnet = LocalNetwork()
        self.mil_attn_V = nn.Linear(512, 128, bias=False)
        self.mil_attn_U = nn.Linear(512, 128, bias=False)
        self.mil_attn_w = nn.Linear(128, 1, bias=False)
        self.classifier_linear = nn.Linear(512, NUM_CLASSES, bias=False)
        self.fusion_dnn = nn.Linear(256 + 512, NUM_CLASSES)

    def attention(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gated attention over the K patch features (N, K, 512) -> (alpha (N, K), z (N, 512))."""
        n, k, d = h.shape
        flat = h.reshape(n * k, d)
        gate = torch.sigmoid(self.mil_attn_U(flat)) * torch.tanh(self.mil_attn_V(flat))
        alpha = torch.softmax(self.mil_attn_w(gate).reshape(n, k), dim=1)
        z = (alpha.unsqueeze(2) * h).sum(dim=1)
        return alpha, z

    def forward(self, x: torch.Tensor) -> GMICOutput:
        """x: (N, 1, 2944, 1920) normalised windows (or this model's `window`)."""
        if tuple(x.shape[-2:]) != self.window:
            raise ValueError(f"GMIC needs {self.window[0]} x {self.window[1]} windows, got "
                             f"{tuple(x.shape[-2:])}")
        h_g = self.ds_net(x)
        saliency = self.left_postprocess_net(h_g)
        y_global = top_t_mean(saliency, self.percent_t)
        cells = retrieve_roi_cells(saliency.detach().float(), self.window, self.patch_size,
                                   self.num_patches)
        locations = cells_to_pixels(cells, (saliency.shape[2], saliency.shape[3]), self.window)
        patches = crop_patches(x, locations, self.patch_size)
        n, k = patches.shape[:2]
        size = self.patch_size
        # Three identical channels (a view, no copy), as the local network was trained on.
        local_in = patches.reshape(n * k, 1, size, size).expand(-1, 3, -1, -1)
        h_k = self.dn_resnet(local_in).reshape(n, k, -1)
        alpha, z = self.attention(h_k)
        y_local = torch.sigmoid(self.classifier_linear(z))
        g = h_g.amax(dim=2).amax(dim=2)  # global max pool of the feature map
        y_fusion = torch.sigmoid(self.fusion_dnn(torch.cat([g, z], dim=1)))
        return GMICOutput(saliency=saliency, y_global=y_global, roi_cells=cells,
                          patch_locations=locations, attention=alpha, y_local=y_local,
                          y_fusion=y_fusion)
