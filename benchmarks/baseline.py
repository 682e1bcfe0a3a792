"""A straightforward implementation of the same method, the yardstick of bench_exam.py.

Written the obvious way on purpose (and kept out of the package): crop masks by 100 iterations of
binary erosion/dilation, patches cut one by one into a float64 array with three identical
channels, batch 100, fp32 NCHW, TF-SAME padding computed per call, torchvision's DenseNet
(torch.cat of all earlier features in every layer), a plain ResNet-22 (NCHW, max_pool2d,
out-of-place ReLU and sum), the default allocator, and each test-time augmentation window run on
its own (batch size 1), rebuilding the view's input every time. The
random draws are the authors' (same stride lists and windows as mammocli), so the outputs agree
within float rounding.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from mammocli.config import PipelineConfig
from mammocli.inference.classify import ClassifierImage, draw_windows
from mammocli.inference.heatmaps import Heatmaps, patch_offsets
from mammocli.models import densenet, resnet22
from mammocli.models.breast import SplitBreastModel
from mammocli.models.densenet import BENIGN_CLASS, MALIGNANT_CLASS, PatchClassifier
from mammocli.preprocess import crop
from mammocli.preprocess.window import cut_window, standardize_image_channel
from mammocli.views import LABELS, VIEWS, Angle, View

# The authors' morphology lives with the tests that check the package against it (one copy).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from authors_morphology import iterative_tissue_mask  # noqa: E402


def _padded_max_pool(self: densenet.SamePadMaxPool, x: torch.Tensor) -> torch.Tensor:
    """TF-SAME padding computed and applied (copied) on every call."""
    k = self.kernel_size if isinstance(self.kernel_size, int) else self.kernel_size[0]
    s = self.stride if isinstance(self.stride, int) else self.stride[0]
    return torch.nn.functional.max_pool2d(densenet._same_pad(x, k, s), k, s)


def _plain_basic_block(self: resnet22.BasicBlockV2, x: torch.Tensor) -> torch.Tensor:
    a = torch.nn.functional.relu(self.bn1(x))
    shortcut = self.downsample(a) if self.downsample is not None else x
    h = self.conv2(torch.nn.functional.relu(self.bn2(self.conv1(a))))
    return h + shortcut


def install() -> None:
    """Switch this process to the straightforward code paths (call before loading models)."""
    densenet.SamePadMaxPool.forward = _padded_max_pool  # type: ignore[method-assign]
    resnet22.BasicBlockV2.forward = _plain_basic_block  # type: ignore[method-assign]
    resnet22.max_pool_3x3_stride_2 = lambda x: torch.nn.functional.max_pool2d(x, 3, 2)
    crop.largest_tissue_mask = iterative_tissue_mask  # type: ignore[assignment]


def standardize64(image: np.ndarray) -> np.ndarray:
    out = image.astype(np.float64)
    out -= out.mean()
    out /= max(out.std(), 1e-5)
    return out


@torch.inference_mode()
def heatmaps(model: PatchClassifier, images: Sequence[np.ndarray], rng: random.Random,
             config: PipelineConfig, batch_size: int = 100) -> list[Heatmaps]:
    """Every patch of every image through the network, batches straddling images."""
    p, stride = config.patch_size, config.patch_stride
    model = model.eval()
    device = next(model.parameters()).device
    jobs = []  # (image index, row, col), the authors' order: images, columns outer, rows inner
    grids = []
    normalized = []
    for i, image in enumerate(images):
        rows = patch_offsets(image.shape[0], p, stride, rng)
        cols = patch_offsets(image.shape[1], p, stride, rng)
        grids.append((rows, cols))
        normalized.append(standardize64(image))
        jobs += [(i, int(r), int(c)) for c in cols for r in rows]
    probs = np.empty((len(jobs), 4), dtype=np.float32)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        batch = np.empty((len(chunk), 3, p, p), dtype=np.float64)
        for k, (i, r, c) in enumerate(chunk):
            patch = normalized[i][r:r + p, c:c + p]
            for channel in range(3):
                batch[k, channel] = patch
        logits = model(torch.from_numpy(batch).float().to(device))
        probs[start:start + len(chunk)] = torch.softmax(logits, dim=1).cpu().numpy()
    out = []
    for i, image in enumerate(images):
        prob_b = np.zeros(image.shape, np.float32)
        prob_m = np.zeros(image.shape, np.float32)
        count = np.zeros(image.shape, np.float32)
        for k in (k for k, job in enumerate(jobs) if job[0] == i):
            _, r, c = jobs[k]
            prob_b[r:r + p, c:c + p] += probs[k, BENIGN_CLASS]
            prob_m[r:r + p, c:c + p] += probs[k, MALIGNANT_CLASS]
            count[r:r + p, c:c + p] += 1
        out.append(Heatmaps(benign=prob_b / count, malignant=prob_m / count,
                            patches=len(grids[i][0]) * len(grids[i][1])))
    return out


@torch.inference_mode()
def view_wise(model: SplitBreastModel, images: Mapping[View, Sequence[ClassifierImage]],
              config: PipelineConfig, rng: np.random.RandomState, tta: int) -> dict[str, float]:
    """Each augmented window on its own, batch size 1, input rebuilt per draw."""
    model = model.eval()
    device = next(model.parameters()).device
    draws = draw_windows(images, config, rng, augment=tta > 0, epochs=max(tta, 1))
    with_heatmaps = model.input_channels == 3
    features: dict[View, list[torch.Tensor]] = {v: [] for v in VIEWS}
    for d in draws:
        image = images[d.view][d.image_index]
        joint = image.joint(with_heatmaps)
        x = standardize_image_channel(cut_window(joint, d.pads, d.record,
                                                 config.window(d.view.angle)))
        features[d.view].append(model.features(d.view, x[None].to(device)))
    logp = model.heads({v: torch.cat(f) for v, f in features.items()})
    cc = torch.exp(logp[Angle.CC].double().cpu())[..., 1]
    mlo = torch.exp(logp[Angle.MLO].double().cpu())[..., 1]
    per_label = ((cc + mlo) / 2).mean(dim=0)
    return {label: float(per_label[i]) for i, label in enumerate(LABELS)}
