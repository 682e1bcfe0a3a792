"""GMIC inference on prepared images: one member or the 5-member ensemble (gmic/SPEC.md 10.3).

The windows are cut and standardised once and shared by all members; the images of a call
(e.g. the four views of an exam) go through each member as one batch. Exact fp32 by default;
a member moved to bfloat16 (`to_precision`) runs in bfloat16 with the ROI search and all
outputs in float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from ..models.gmic import GMIC, PATCH_SIZE, GMICOutput, prepare_for_inference
from ..models.gmic_loading import load_gmic
from ..preprocess.gmic import GMICWindow, gmic_window, stack_windows
from ..preprocess.prepare import PreparedImage


@dataclass(frozen=True)
class GMICEnsembleOutput:
    members: dict[int, GMICOutput]  # per member index, in call order
    y_fusion: torch.Tensor  # (N, 2): per image the mean of the members' y_fusion (NaN ignored)


@dataclass(frozen=True)
class MemberMaps:
    """One member's view of one image, for pictures (`Export.SALIENCY`)."""

    saliency: np.ndarray  # (2, 46, 30) float32 benign, malignant over the network window,
    # canonical orientation (chest wall left), exactly the member's output
    locations: torch.Tensor  # (K, 2) int64 upper-left window pixels of the patches
    attention: np.ndarray  # (K,) float32, selection order


@dataclass(frozen=True)
class ImageSaliency:
    """What GMIC hands the picture writers for one image: every member's maps and patches,
    the window's geometry (its pixels dropped) and the prediction shown (the primary
    variant's y_fusion: the ensemble mean, or the one member's)."""

    window: GMICWindow  # pixels empty: only `pads` and `record` are kept
    members: dict[int, MemberMaps]  # member index -> maps, in call order
    probabilities: tuple[float, float]  # benign, malignant


def image_saliency(ensemble: GMICEnsembleOutput, windows: Sequence[GMICWindow],
                   ) -> list[ImageSaliency]:
    """Per image of a batch, its maps, patches and window geometry."""
    out = []
    for i, window in enumerate(windows):
        members = {m: MemberMaps(saliency=o.saliency[i].numpy().astype(np.float32, copy=True),
                                 locations=o.patch_locations[i].clone(),
                                 attention=o.attention[i].numpy().astype(np.float32, copy=True))
                   for m, o in ensemble.members.items()}
        fusion = ensemble.y_fusion[i]
        out.append(ImageSaliency(
            window=replace(window, pixels=np.empty((0, 0), np.float32)), members=members,
            probabilities=(float(fusion[0]), float(fusion[1]))))
    return out


def load_gmic_members(paths: Mapping[int, Path]) -> dict[int, GMIC]:
    """Member index (1..5) -> its weight file, e.g. {i: locate(member_file_name(i))}; each
    ready for inference (`prepare_for_inference`: channels_last weights)."""
    return {member: prepare_for_inference(load_gmic(path, member))
            for member, path in paths.items()}


def to_precision(model: GMIC, device: torch.device, dtype: torch.dtype) -> GMIC:
    """The member on `device` in `dtype` (from `precision.configure`), ready for inference
    (`prepare_for_inference`); in place."""
    return prepare_for_inference(model).to(device=device, dtype=dtype)


def gmic_windows(images: Sequence[PreparedImage]) -> tuple[torch.Tensor, list[GMICWindow]]:
    """The (N, 1, 2944, 1920) float32 batch of standardised windows and their placements."""
    windows = [gmic_window(image) for image in images]
    return torch.from_numpy(stack_windows(windows)), windows


def _float32_cpu(out: GMICOutput) -> GMICOutput:
    values = {f.name: getattr(out, f.name) for f in fields(out)}
    # contiguous: the channels_last saliency maps come back in the ordinary layout
    return GMICOutput(**{k: (v.float() if v.is_floating_point() else v).cpu().contiguous()
                         for k, v in values.items()})


def run_member(model: GMIC, x: torch.Tensor) -> GMICOutput:
    """One member on a batch of standardised windows, on the member's device and dtype;
    outputs on the CPU in float32."""
    param = next(model.parameters())
    with torch.inference_mode():
        out = model(x.to(device=param.device, dtype=param.dtype))
    return _float32_cpu(out)


def run_ensemble(models: Mapping[int, GMIC], x: torch.Tensor) -> GMICEnsembleOutput:
    """Every member on the same batch; the ensemble prediction is the per-image mean of the
    members' y_fusion, as the authors' `--model-index ensemble` (nanmean)."""
    if not models:
        raise ValueError("no GMIC members given")
    members = {index: run_member(model, x) for index, model in models.items()}
    stacked = torch.stack([out.y_fusion for out in members.values()])
    return GMICEnsembleOutput(members=members, y_fusion=torch.nanmean(stacked, dim=0))


def predict_images(models: Mapping[int, GMIC], images: Sequence[PreparedImage],
                   ) -> tuple[GMICEnsembleOutput, list[GMICWindow]]:
    """Prepared images (any views, e.g. every image of an exam) -> the members' outputs and
    the ensemble, with the windows for mapping patch locations back (`patch_boxes`)."""
    x, windows = gmic_windows(images)
    return run_ensemble(models, x), windows


def patch_boxes(image: PreparedImage, window: GMICWindow, locations: torch.Tensor,
                size: int = PATCH_SIZE) -> np.ndarray:
    """(K, 2) upper-left window pixels -> (K, 4) boxes (top, bottom, left, right), half-open,
    in the coordinates of the stored (original, unflipped, uncropped) image. Parts lying in
    the zero padding are clipped away (a box wholly in the padding has top == bottom or
    left == right)."""
    pad_top = window.pads[0]
    top, _, left, _ = window.record.borders_final
    height, width = image.pixels.shape  # cropped, canonical
    loc = locations.cpu().numpy().astype(np.int64)
    rows0 = np.clip(loc[:, 0] + top - pad_top, 0, height)
    rows1 = np.clip(loc[:, 0] + size + top - pad_top, 0, height)
    cols0 = np.clip(loc[:, 1] + left, 0, width)
    cols1 = np.clip(loc[:, 1] + size + left, 0, width)
    if image.orientation.needs_flip:  # canonical column x is stored column width - 1 - x
        cols0, cols1 = width - cols1, width - cols0
    crop_top, _, crop_left, _ = image.crop.window_location
    return np.stack([rows0 + crop_top, rows1 + crop_top, cols0 + crop_left, cols1 + crop_left],
                    axis=1)
