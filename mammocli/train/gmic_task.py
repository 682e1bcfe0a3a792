"""task: gmic. Fine-tuning GMIC (gmic/SPEC.md) on image- or breast-level labels with the loss
of the paper: binary cross-entropy on y_global, y_local and y_fusion, plus beta times the L1
norm of the saliency maps (`gmic.saliency_l1`).

One sample = one image and its (benign, malignant) labels. Breast-level labels come from the
breast manifest (every image of a breast takes that breast's labels); image-level labels from
an image manifest: `image` (16-bit PNG), `view` (L-CC, R-CC, L-MLO, R-MLO), `benign`,
`malignant` (0/1), optional `patient` and `split`. Validation AUROC is per image.

The export is the official file layout: a flat state dict of the model's 258 keys plus the
extra `shared_rep_filter.weight` the released files carry, named `sample_model_<member>.p`,
so `load_gmic` (and `predict --model gmic --weights-dir`) read it like a downloaded file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import FlipMode, PipelineConfig
from ..errors import ConfigError, InputError
from ..inference.classify import ClassifierImage
from ..io.exam import ImageSource
from ..io.load import read_view_image
from ..models.gmic import GMIC, PERCENT_T, GMICOutput
from ..models.gmic_loading import EXTRA_KEY, member_file_name
from ..models.loading import load_strict, read_state_dict
from ..preprocess.prepare import prepare_image
from ..preprocess.window import cut_window, sample_window, standardize_image_channel
from ..views import VIEWS, View
from .config import GMICLabels, TrainConfig
from .data import ExamItem, _cache_key, _save_npz, prepare_exams, sample_rng, torch_generator
from .datasets import Datasets, manifest_card
from .manifest import _file, _read_rows, _split, read_breast_manifest, split_rows

METRICS = ("benign", "malignant")
IMAGE_COLUMNS = ("image", "view", "benign", "malignant")
# The extra tensor when no official file gave one (its real shape is unknown, SPEC 11.2).
EXTRA_SHAPE = (1024, 1024)


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class ImageRow:
    row: int
    source: ImageSource
    labels: tuple[int, int]  # benign, malignant
    patient: str
    split: str | None


@dataclass(frozen=True)
class GMICItem:
    row: int
    view: View
    image: ClassifierImage  # cropped, canonical, with its best centre for GMIC's window
    labels: tuple[int, int]


def read_image_manifest(path: Path) -> list[ImageRow]:
    """Every row checked: the image exists, the view is one of the four, labels are 0/1."""
    path = Path(path)
    out = []
    for i, raw in enumerate(_read_rows(path, IMAGE_COLUMNS), start=1):
        where = f"{path.name} row {i}"
        image = _file(path.parent, raw["image"], where, "image")
        assert image is not None
        try:
            view = View(raw["view"])
        except ValueError:
            raise InputError(f"{where}: view must be one of "
                             f"{', '.join(v.value for v in VIEWS)}, not {raw['view']!r}") from None
        labels = []
        for column in ("benign", "malignant"):
            if raw[column] not in ("0", "1"):
                raise InputError(f"{where}: {column} must be 0 or 1, not {raw[column]!r}")
            labels.append(int(raw[column]))
        out.append(ImageRow(i, ImageSource(path=image, relative=raw["image"], view=view),
                            (labels[0], labels[1]), raw.get("patient") or raw["image"],
                            _split(raw.get("split", ""), where)))
    return out


def breast_items(exams: list[ExamItem]) -> list[GMICItem]:
    """Every image of every view, labelled with its breast's (benign, malignant)."""
    items = []
    for exam in exams:
        left_b, right_b, left_m, right_m = exam.labels
        for view in VIEWS:
            labels = (left_b, left_m) if view.side.value == "left" else (right_b, right_m)
            items += [GMICItem(exam.row, view, image, labels) for image in exam.images[view]]
    return items


def prepare_image_rows(rows: list[ImageRow], pipeline: PipelineConfig,
                       cache_dir: Path) -> list[GMICItem]:
    """Stages 1-2 of each image, cached on disk like the breast task's exams."""
    key = (pipeline.crop_iterations, pipeline.crop_buffer, pipeline.cc_window,
           pipeline.mlo_window)
    items = []
    for row in rows:
        path = cache_dir / "prepared" / f"{_cache_key(str(row.source.path.resolve()), key)}.npz"
        if path.is_file():
            with np.load(path) as z:
                pixels, center = z["pixels"], tuple(int(v) for v in z["center"])
        else:
            prepared = prepare_image(read_view_image(row.source), FlipMode.AUTO, pipeline)
            pixels, center = prepared.pixels, prepared.best_center
            _save_npz(path, {"pixels": pixels, "center": np.array(center)})
        items.append(GMICItem(row.row, row.source.view,
                              ClassifierImage(pixels, center, None),  # type: ignore[arg-type]
                              row.labels))
    return items


class GMICDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """(1, H, W) standardised window, (2,) float targets. Training: the authors' random window
    (position and size noise of `pipeline`) and Gaussian noise, drawn per (seed, epoch, index);
    validation: the noise-free window GMIC's inference uses."""

    def __init__(self, items: list[GMICItem], window: tuple[int, int], pipeline: PipelineConfig,
                 *, train: bool, seed: int, augment: bool = True, noise_std: float = 0.0) -> None:
        self.items = items
        self.window = window
        self.pipeline = pipeline
        self.train = train
        self.seed = seed
        self.augment = augment and train
        self.noise_std = noise_std if train else 0.0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[index]
        rng = sample_rng(self.seed, self.epoch if self.train else -1, index)
        image = item.image
        pads, record = sample_window(
            image.pixels.shape, item.view.angle, image.best_center, self.window, rng,
            augment=self.augment, max_crop_noise=self.pipeline.max_crop_noise,
            max_crop_size_noise=self.pipeline.max_crop_size_noise)
        x = standardize_image_channel(cut_window(image.joint(False), pads, record, self.window))
        if self.noise_std > 0:
            x = x + torch.randn(x.shape, generator=torch_generator(rng)) * self.noise_std
        return x, torch.tensor(item.labels, dtype=torch.float32)


def build_datasets(config: TrainConfig, pipeline: PipelineConfig) -> Any:

    cache = config.data.cache_dir or config.output_dir / "cache"
    if config.gmic.labels is GMICLabels.BREAST:
        rows = read_breast_manifest(config.data.train)
        val_rows = read_breast_manifest(config.data.val) if config.data.val else None
        train_rows, val_rows = split_rows(rows, val_rows, config.data.val_fraction, config.seed)
        if not train_rows or not val_rows:
            raise ConfigError("the gmic task needs both training and validation exams")
        train = breast_items(prepare_exams(train_rows, pipeline, cache, None, "", config.seed))
        val = breast_items(prepare_exams(val_rows, pipeline, cache, None, "", config.seed))
        counts, unit = (len(train_rows), len(val_rows)), "exams"
    else:
        image_rows = read_image_manifest(config.data.train)
        image_val = read_image_manifest(config.data.val) if config.data.val else None
        # split_rows only reads .split and .patient, which image rows have too.
        train_images, val_images = split_rows(  # type: ignore[type-var]
            image_rows, image_val, config.data.val_fraction, config.seed)
        if not train_images or not val_images:
            raise ConfigError("the gmic task needs both training and validation images")
        train = prepare_image_rows(train_images, pipeline, cache)
        val = prepare_image_rows(val_images, pipeline, cache)
        counts, unit = (len(train_images), len(val_images)), "images"
    window = config.gmic.window
    card = manifest_card(config, *counts, unit)
    card.update(labels=config.gmic.labels.value, train_images=len(train), val_images=len(val))
    return Datasets(
        GMICDataset(train, window, pipeline, train=True, seed=config.seed,
                    augment=config.augment, noise_std=config.noise_std),
        GMICDataset(val, window, pipeline, train=False, seed=config.seed), card)


# --------------------------------------------------------------------------- model
def official_name(config: TrainConfig) -> str:
    return member_file_name(config.gmic.member)


def new_model(config: TrainConfig) -> GMIC:
    g = config.gmic
    return GMIC(PERCENT_T[g.member], window=g.window, patch_size=g.patch_size,
                num_patches=g.num_patches)


def load_into(model: GMIC, state: dict[str, torch.Tensor], name: str) -> GMIC:
    """Strict on the model's keys; the official files' one extra key is ignored."""
    return load_strict(model, {k: v for k, v in state.items() if k != EXTRA_KEY}, name)


def _log_clamped(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p).clamp_min(-100.0)  # as torch's binary_cross_entropy


def bce(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of probabilities, written out so that it also runs under
    autocast (torch's binary_cross_entropy refuses fp16 autocast)."""
    p = p.float()
    return -(target * _log_clamped(p) + (1 - target) * _log_clamped(1 - p)).mean()


def loss_of(out: GMICOutput, target: torch.Tensor, saliency_l1: float) -> torch.Tensor:
    """BCE(y_global) + BCE(y_local) + BCE(y_fusion) + beta * mean over images of |A|_1."""
    target = target.float()
    l1 = out.saliency.float().abs().flatten(1).sum(dim=1).mean()
    return (bce(out.y_global, target) + bce(out.y_local, target) + bce(out.y_fusion, target)
            + saliency_l1 * l1)


def scores_of(out: GMICOutput, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2) y_fusion (benign, malignant), (N, 2) 0/1 targets."""
    return out.y_fusion.float(), target.round().long()


def export_payload(state: dict[str, torch.Tensor], init_source: str) -> dict[str, torch.Tensor]:
    """The flat official layout: the model's keys, then the extra key, carried over from the
    file training started from when it had one (zeros otherwise: the released model never
    reads it)."""
    extra = None
    source = Path(init_source)
    if source.is_file():
        extra = read_state_dict(source).get(EXTRA_KEY)
    payload = dict(state)
    payload[EXTRA_KEY] = (extra.detach().cpu().clone() if extra is not None
                          else torch.zeros(EXTRA_SHAPE, dtype=torch.float32))
    return payload
