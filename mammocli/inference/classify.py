"""Stage 4: the breast-level models with test-time augmentation (SPEC 4 and 6).

The authors run one augmented window per view per epoch, batch size 1. We draw the windows in
their order (so the random stream is identical), then push all windows of one view through its
ResNet column together, and apply the heads per epoch: the same numbers, fewer passes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import PipelineConfig
from ..models.breast import ImageBreastModel, SplitBreastModel
from ..preprocess.window import WindowRecord, cut_window, sample_window, standardize_image_channel
from ..views import LABELS, VIEWS, Angle, Side, View


@dataclass(frozen=True)
class ClassifierImage:
    """One canonical cropped image ready for stage 4."""

    pixels: np.ndarray  # uint16 (H, W), canonical
    best_center: tuple[int, int]
    heatmaps: tuple[np.ndarray, np.ndarray] | None = None  # (benign, malignant), canonical

    def joint(self, with_heatmaps: bool) -> torch.Tensor:
        """(C, H, W) float32: image, then benign and malignant heatmaps."""
        channels = [torch.from_numpy(self.pixels.astype(np.float32))]
        if with_heatmaps:
            if self.heatmaps is None:
                raise ValueError("the image+heatmaps model needs heatmaps")
            channels += [torch.from_numpy(np.ascontiguousarray(h)) for h in self.heatmaps]
        return torch.stack(channels)


@dataclass(frozen=True)
class WindowDraw:
    epoch: int
    view: View
    image_index: int
    pads: tuple[int, int, int]
    record: WindowRecord


def draw_windows(images: Mapping[View, Sequence[ClassifierImage]], config: PipelineConfig,
                 rng: np.random.RandomState, *, augment: bool, epochs: int) -> list[WindowDraw]:
    """All windows of a run, drawn in the authors' order: epochs, then views (VIEWS order)."""
    draws = []
    for epoch in range(epochs):
        for view in VIEWS:
            if view not in images:
                continue
            choices = images[view]
            index = int(rng.randint(0, len(choices))) if augment else 0
            image = choices[index]
            pads, record = sample_window(
                image.pixels.shape, view.angle, image.best_center,
                config.window(view.angle), rng, augment=augment,
                max_crop_noise=config.max_crop_noise,
                max_crop_size_noise=config.max_crop_size_noise,
            )
            draws.append(WindowDraw(epoch, view, index, pads, record))
    return draws


@torch.inference_mode()
def view_features(model: SplitBreastModel | ImageBreastModel,
                  images: Mapping[View, Sequence[ClassifierImage]], draws: Sequence[WindowDraw],
                  config: PipelineConfig, device: torch.device,
                  dtype: torch.dtype = torch.float32) -> dict[View, torch.Tensor]:
    """ResNet features (epochs, 256) per view, windows batched per view."""
    with_heatmaps = model.input_channels == 3
    out: dict[View, torch.Tensor] = {}
    for view in VIEWS:
        view_draws = [d for d in draws if d.view is view]
        if not view_draws:
            continue
        joints = {i: images[view][i].joint(with_heatmaps)
                  for i in sorted({d.image_index for d in view_draws})}
        window = config.window(view.angle)
        feats = []
        for start in range(0, len(view_draws), config.classifier_batch_size):
            chunk = view_draws[start:start + config.classifier_batch_size]
            batch = torch.stack([
                standardize_image_channel(cut_window(joints[d.image_index], d.pads, d.record,
                                                     window))
                for d in chunk
            ]).to(device=device, dtype=dtype)
            # NHWC: oneDNN's faster layout here (fp32 ~1.2x, bf16 more); as close to the
            # reference as NCHW (tests/test_fidelity.py).
            batch = batch.contiguous(memory_format=torch.channels_last)
            feats.append(model.features(view, batch).float())
        out[view] = torch.cat(feats)
    return out


@torch.inference_mode()
def view_wise_log_probabilities(model: SplitBreastModel, features: Mapping[View, torch.Tensor],
                                ) -> dict[Angle, torch.Tensor]:
    """Per epoch: {CC, MLO: (epochs, 4, 2)} log-probabilities, labels in LABELS order."""
    return model.heads(dict(features))


@torch.inference_mode()
def view_wise_probabilities(model: SplitBreastModel, features: Mapping[View, torch.Tensor],
                            ) -> dict[str, float]:
    """Per label: mean over epochs of the mean of the CC and MLO heads' probabilities."""
    logp = view_wise_log_probabilities(model, features)
    cc = torch.exp(logp[Angle.CC].double())[..., 1]  # (epochs, 4)
    mlo = torch.exp(logp[Angle.MLO].double())[..., 1]
    per_label = ((cc + mlo) / 2).mean(dim=0)
    return {label: float(per_label[i]) for i, label in enumerate(LABELS)}


@torch.inference_mode()
def image_wise_probabilities(model: ImageBreastModel, features: Mapping[View, torch.Tensor],
                             ) -> dict[View, tuple[float, float]]:
    """Per view: (benign, malignant) of its own breast, averaged over epochs."""
    out = {}
    for view, feats in features.items():
        p = torch.exp(model.head(view, feats).double())[..., 1]  # (epochs, 4)
        out[view] = (float(p[:, 0].mean()), float(p[:, 1].mean()))
    return out


def breast_means(per_view: Mapping[View, tuple[float, float]]) -> dict[str, float]:
    """Image-wise to breast level: the mean of a breast's CC and MLO predictions (sides without
    any view are left out)."""
    values = {}
    for side in Side:
        views = [v for v in VIEWS if v.side is side and v in per_view]
        if not views:
            continue
        values[f"{side.value}_benign"] = float(np.mean([per_view[v][0] for v in views]))
        values[f"{side.value}_malignant"] = float(np.mean([per_view[v][1] for v in views]))
    return values
