"""Datasets of the two training tasks.

Randomness is a pure function of (seed, epoch, sample index): the augmentation window, the
input noise and the patch positions of a sample do not depend on the worker, the process or the
batch it lands in. That is what makes resume exact and a DDP run equal to a single-process run.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..config import FlipMode, PipelineConfig
from ..errors import InputError
from ..inference.classify import ClassifierImage
from ..inference.heatmaps import HeatmapEngine, standardize
from ..io.exam import ImageSource
from ..io.load import read_view_image
from ..io.png import read_png
from ..outputs.files import atomic_write_bytes
from ..preprocess.patches import integral_image, pad_to_patch, patch_sums
from ..preprocess.prepare import prepare_image
from ..preprocess.window import cut_window, sample_window, standardize_image_channel
from ..views import VIEWS, Side, View
from .config import PatchSampling
from .manifest import BreastRow, PatchRow

MALIGNANT, BENIGN, OUTSIDE, NEGATIVE = 0, 1, 2, 3  # patch classes = heatmap softmax indices


def sample_rng(seed: int, epoch: int, index: int) -> np.random.RandomState:
    """The generator of one sample in one epoch (epoch -1: validation)."""
    return np.random.RandomState([seed & 0xFFFFFFFF, epoch + 1, index])


def torch_generator(rng: np.random.RandomState) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.randint(0, 2**31 - 1)))


# --------------------------------------------------------------------------- breast task

@dataclass(frozen=True)
class ExamItem:
    """One exam ready for training: per view, its images (canonical, cropped) with heatmaps."""

    row: int
    exam_id: str
    images: dict[View, list[ClassifierImage]]
    labels: tuple[int, int, int, int]


def _cache_key(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(path, buffer.getvalue())


def prepare_exams(rows: Sequence[BreastRow], config: PipelineConfig, cache_dir: Path,
                  engine: HeatmapEngine | None, engine_id: str, seed: int,
                  advance: object = None) -> list[ExamItem]:
    """Stages 1-2 (and 3 for the image+heatmaps model) of every exam, cached on disk so a
    second run (or a resume) does not redo them. Heatmaps use stride draws seeded per exam."""
    items = []
    prep_key = (config.crop_iterations, config.crop_buffer, config.cc_window, config.mlo_window)
    for row in rows:
        folder = str(row.exam.folder.resolve())
        path = cache_dir / "prepared" / f"{_cache_key(folder, prep_key)}.npz"
        arrays: dict[str, np.ndarray]
        if path.is_file():
            with np.load(path) as z:
                arrays = dict(z)
        else:
            arrays = {}
            for view in VIEWS:
                for i, src in enumerate(row.exam.images[view]):
                    prepared = prepare_image(read_view_image(src),
                                             row.exam.horizontal_flip or FlipMode.AUTO, config)
                    arrays[f"{view.value}/{i}/pixels"] = prepared.pixels
                    arrays[f"{view.value}/{i}/center"] = np.array(prepared.best_center)
            _save_npz(path, arrays)
        if engine is not None:
            hpath = cache_dir / "heatmaps" / f"{_cache_key(folder, prep_key, engine_id)}.npz"
            if hpath.is_file():
                with np.load(hpath) as z:
                    arrays.update(dict(z))
            else:
                maps: dict[str, np.ndarray] = {}
                strides = random.Random(seed)
                for view in VIEWS:
                    for i in range(len(row.exam.images[view])):
                        h = engine.heatmaps(arrays[f"{view.value}/{i}/pixels"], strides)
                        maps[f"{view.value}/{i}/benign"] = h.benign
                        maps[f"{view.value}/{i}/malignant"] = h.malignant
                _save_npz(hpath, maps)
                arrays.update(maps)
        images = {
            view: [
                ClassifierImage(
                    arrays[f"{view.value}/{i}/pixels"],
                    tuple(int(v) for v in arrays[f"{view.value}/{i}/center"]),  # type: ignore[arg-type]
                    (arrays[f"{view.value}/{i}/benign"], arrays[f"{view.value}/{i}/malignant"])
                    if engine is not None else None,
                )
                for i in range(len(row.exam.images[view]))
            ]
            for view in VIEWS
        }
        items.append(ExamItem(row.row, row.exam.exam_id, images, row.labels))
        if callable(advance):
            advance()
    return items


class BreastDataset(Dataset[tuple[dict[str, torch.Tensor], torch.Tensor]]):
    """One sample = one exam: a window per view (the authors' random window in training, the
    deterministic one in validation), standardised, plus Gaussian noise in training."""

    def __init__(self, items: Sequence[ExamItem], config: PipelineConfig, *, train: bool,
                 seed: int, with_heatmaps: bool, noise_std: float = 0.0,
                 augment: bool = True) -> None:
        self.items = list(items)
        self.config = config
        self.train = train
        self.seed = seed
        self.with_heatmaps = with_heatmaps
        self.noise_std = noise_std if train else 0.0
        self.augment = augment and train
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        item = self.items[index]
        rng = sample_rng(self.seed, self.epoch if self.train else -1, index)
        inputs = {}
        for view in VIEWS:
            choices = item.images[view]
            image = choices[int(rng.randint(0, len(choices))) if self.augment else 0]
            window = self.config.window(view.angle)
            pads, record = sample_window(
                image.pixels.shape, view.angle, image.best_center, window, rng,
                augment=self.augment, max_crop_noise=self.config.max_crop_noise,
                max_crop_size_noise=self.config.max_crop_size_noise)
            x = standardize_image_channel(cut_window(image.joint(self.with_heatmaps), pads,
                                                     record, window))
            if self.noise_std > 0:
                # The model's own noise layer draws per batch; drawing here, per sample, keeps
                # training independent of how samples are batched across processes.
                x = x + torch.randn(x.shape, generator=torch_generator(rng)) * self.noise_std
            inputs[view.value] = x
        return inputs, torch.tensor(item.labels, dtype=torch.long)


# --------------------------------------------------------------------------- patch task

def _read_mask(path: Path | None, shape: tuple[int, int], where: str) -> np.ndarray:
    if path is None:
        return np.zeros(shape, dtype=bool)
    try:
        with Image.open(path) as im:
            mask: np.ndarray = np.asarray(im) > 0
    except OSError as exc:
        raise InputError(f"{where}: cannot read mask {path.name} ({exc})") from exc
    if mask.ndim == 3:
        mask = np.asarray(mask.any(axis=2))
    if mask.shape != shape:
        raise InputError(f"{where}: mask {path.name} is {mask.shape}, the image {shape}")
    return mask


@dataclass(frozen=True)
class PatchImage:
    row: int
    normalized: np.ndarray  # float32, standardised over the whole image as the heatmap engine
    candidates: tuple[np.ndarray, ...]  # per class: flat indices of allowed top-left corners


def load_patch_image(row: PatchRow, patch: int, sampling: PatchSampling) -> PatchImage:
    where = f"row {row.row}"
    src = ImageSource(path=row.image, relative=row.image.name, view=View.L_CC)
    pixels = read_png(src).pixels
    malignant = _read_mask(row.malignant_mask, pixels.shape, where)
    benign = _read_mask(row.benign_mask, pixels.shape, where)
    # padded as the heatmap engine pads: background at the bottom/right
    pixels, malignant, benign = (pad_to_patch(a, patch) for a in (pixels, malignant, benign))
    tissue = pixels > 0
    half = patch // 2
    corners_h, corners_w = pixels.shape[0] - patch + 1, pixels.shape[1] - patch + 1

    def centred_on(mask: np.ndarray) -> np.ndarray:
        # Top-left corners whose patch centre lies on the mask.
        return mask[half:half + corners_h, half:half + corners_w]

    tissue_sum = patch_sums(integral_image(tissue), patch)
    lesion_sum = patch_sums(integral_image(malignant | benign), patch)
    classes = (
        centred_on(malignant),
        centred_on(benign),
        tissue_sum <= sampling.max_tissue_outside * patch * patch,
        centred_on(tissue) & (lesion_sum == 0),
    )
    return PatchImage(row.row, standardize(pixels).astype(np.float32),
                      tuple(np.flatnonzero(c) for c in classes))


class PatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Patches per image and class, positions drawn per epoch (validation: one fixed draw)."""

    def __init__(self, images: Sequence[PatchImage], patch: int, counts: Sequence[int], *,
                 train: bool, seed: int) -> None:
        self.images = list(images)
        self.patch = patch
        self.counts = tuple(counts)
        self.train = train
        self.seed = seed
        # Which (image, class, draw) each index is; fixed across epochs so samplers can shard it.
        self.slots = [(i, c, k) for i, img in enumerate(self.images)
                      for c, n in enumerate(self.counts) if img.candidates[c].size
                      for k in range(n)]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.slots)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_index, cls, _ = self.slots[index]
        img = self.images[image_index]
        rng = sample_rng(self.seed, self.epoch if self.train else -1, index)
        candidates = img.candidates[cls]
        corner = int(candidates[rng.randint(0, candidates.size)])
        width = img.normalized.shape[1] - self.patch + 1
        top, left = divmod(corner, width)
        x = torch.from_numpy(np.ascontiguousarray(
            img.normalized[top:top + self.patch, left:left + self.patch]))
        if self.train and rng.randint(0, 2):
            x = x.flip(-1)  # heatmaps see both breast orientations' textures
        return x.unsqueeze(0).expand(3, -1, -1).contiguous(), torch.tensor(cls)


def breast_side_labels(labels: torch.Tensor, side: Side) -> torch.Tensor:
    """(N, 4) LABELS-order targets -> (N, 2) benign, malignant of one breast."""
    if side is Side.LEFT:
        return labels[:, [0, 2]]
    return labels[:, [1, 3]]
