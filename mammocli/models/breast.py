"""Breast-level models: view-wise (`SplitBreastModel`, the published exam model) and image-wise
(`ImageBreastModel`, the `*__ModeImage_weights.p` files) (SPEC 6.2-6.5).

Both return per-label log-probabilities of shape (N, 4, 2): rows in the authors' LABELS order
for the view-wise heads; for the image-wise heads only rows 0 (benign) and 1 (malignant) of the
view's own breast are meaningful.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..views import VIEWS, Angle, View
from .resnet22 import FEATURES, ResNet22

NUM_LABELS = 4


class GaussianNoise(nn.Module):
    """Input noise N(0, std^2) in training mode only (the authors' AllViewsGaussianNoise)."""

    def __init__(self, std: float = 0.01) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training or self.std == 0:
            return x
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + noise * self.std


class OutputLayer(nn.Module):
    """Linear -> (N, labels, 2) -> log-softmax over the 2 classes of each label."""

    def __init__(self, in_features: int, labels: int = NUM_LABELS) -> None:
        super().__init__()
        self.labels = labels
        self.fc_layer = nn.Linear(in_features, labels * 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.fc_layer(h).view(-1, self.labels, 2), dim=-1)


class FourViewResNet(nn.Module):
    """Two ResNet-22 columns: `cc` serves both CC views, `mlo` both MLO views.

    The same modules are also registered as l_cc, r_cc, l_mlo, r_mlo, because the official state
    dicts hold all six prefixes (state_dict does not de-duplicate aliases).
    """

    def __init__(self, input_channels: int) -> None:
        super().__init__()
        self.cc = ResNet22(input_channels)
        self.mlo = ResNet22(input_channels)
        self.l_cc = self.cc
        self.l_mlo = self.mlo
        self.r_cc = self.cc
        self.r_mlo = self.mlo

    def column(self, angle: Angle) -> ResNet22:
        return self.cc if angle is Angle.CC else self.mlo


class SplitBreastModel(nn.Module):
    """View-wise model: CC features of both breasts -> CC head; MLO likewise. The breast
    probability is the mean of the CC and MLO heads' probabilities (done by the caller)."""

    def __init__(self, input_channels: int) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.noise = GaussianNoise()
        self.four_view_resnet = FourViewResNet(input_channels)
        self.fc1_cc = nn.Linear(2 * FEATURES, 2 * FEATURES)
        self.fc1_mlo = nn.Linear(2 * FEATURES, 2 * FEATURES)
        self.output_layer_cc = OutputLayer(2 * FEATURES)
        self.output_layer_mlo = OutputLayer(2 * FEATURES)

    def features(self, view: View, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.four_view_resnet.column(view.angle)(self.noise(x))
        return out

    def heads(self, features: dict[View, torch.Tensor]) -> dict[Angle, torch.Tensor]:
        """Per-view features (N, 256) -> {CC, MLO: (N, 4, 2) log-probabilities}."""
        h_cc = torch.cat([features[View.L_CC], features[View.R_CC]], dim=1)
        h_mlo = torch.cat([features[View.L_MLO], features[View.R_MLO]], dim=1)
        return {
            Angle.CC: self.output_layer_cc(F.relu(self.fc1_cc(h_cc))),
            Angle.MLO: self.output_layer_mlo(F.relu(self.fc1_mlo(h_mlo))),
        }

    def forward(self, inputs: dict[View, torch.Tensor]) -> dict[Angle, torch.Tensor]:
        return self.heads({v: self.features(v, inputs[v]) for v in VIEWS})


class ImageBreastModel(nn.Module):
    """Image-wise model: one head per view, each predicting its own breast."""

    def __init__(self, input_channels: int) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.noise = GaussianNoise()
        self.four_view_resnet = FourViewResNet(input_channels)
        for v in VIEWS:
            self.add_module(f"fc1_{v.compact}", nn.Linear(FEATURES, FEATURES))
        for v in VIEWS:
            self.add_module(f"output_layer_{v.compact}", OutputLayer(FEATURES))

    def features(self, view: View, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.four_view_resnet.column(view.angle)(self.noise(x))
        return out

    def head(self, view: View, features: torch.Tensor) -> torch.Tensor:
        fc1: nn.Linear = getattr(self, f"fc1_{view.compact}")
        out: OutputLayer = getattr(self, f"output_layer_{view.compact}")
        probabilities: torch.Tensor = out(F.relu(fc1(features)))
        return probabilities

    def forward(self, inputs: dict[View, torch.Tensor]) -> dict[View, torch.Tensor]:
        return {v: self.head(v, self.features(v, x)) for v, x in inputs.items()}
