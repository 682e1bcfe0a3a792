"""From a validated config to ready datasets: manifests read and checked, validation split by
patient, exams prepared (and heatmaps computed) once into the cache. Everything here runs before
the first training step, so bad data fails early with the row that is wrong."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import PipelineConfig
from ..errors import ConfigError
from ..hashing import sha256_file
from ..inference.heatmaps import HeatmapEngine
from ..models.loading import load_patch_classifier
from ..vocabulary import PATCH_WEIGHTS, Variant
from ..weights.fetch import resolve_weights
from .config import Task, TrainConfig
from .data import BreastDataset, PatchDataset, load_patch_image, prepare_exams
from .datasets import Datasets, manifest_card
from .manifest import read_breast_manifest, read_patch_manifest, split_rows


def build_datasets(config: TrainConfig, pipeline: PipelineConfig, device: torch.device,
                   advance: Callable[[], None] | None = None) -> Datasets:
    if config.task is Task.PATCH:
        return _patch_datasets(config, pipeline)
    if config.task is Task.GMIC:
        from .gmic_task import build_datasets as gmic_datasets  # imports this module

        return gmic_datasets(config, pipeline)  # type: ignore[no-any-return]
    return _breast_datasets(config, pipeline, device, advance)


def _patch_datasets(config: TrainConfig, pipeline: PipelineConfig) -> Datasets:
    rows = read_patch_manifest(config.data.train)
    val_rows = read_patch_manifest(config.data.val) if config.data.val else None
    train_rows, val_rows = split_rows(rows, val_rows, config.data.val_fraction, config.seed)
    if not train_rows or not val_rows:
        raise ConfigError("the patch task needs both training and validation images")
    sampling = config.data.patches
    p = pipeline.patch_size
    counts = (sampling.malignant, sampling.benign, sampling.outside, sampling.negative)
    train = PatchDataset([load_patch_image(r, p, sampling) for r in train_rows], p, counts,
                         train=True, seed=config.seed)
    val = PatchDataset([load_patch_image(r, p, sampling) for r in val_rows], p,
                       (config.data.val_patches_per_image,) * 4, train=False, seed=config.seed)
    if len(train) == 0:
        raise ConfigError("no training patch can be drawn; check the masks and data.patches")
    return Datasets(train, val, manifest_card(config, len(train_rows), len(val_rows), "images"))


def _breast_datasets(config: TrainConfig, pipeline: PipelineConfig, device: torch.device,
                     advance: Callable[[], None] | None) -> Datasets:
    rows = read_breast_manifest(config.data.train)
    val_rows = read_breast_manifest(config.data.val) if config.data.val else None
    train_rows, val_rows = split_rows(rows, val_rows, config.data.val_fraction, config.seed)
    if not train_rows or not val_rows:
        raise ConfigError("the breast task needs both training and validation exams")
    heatmaps = config.model.variant is Variant.IMAGE_AND_HEATMAPS
    engine = None
    engine_id = ""
    patch_path = None
    if heatmaps:
        patch_path = config.model.patch_weights or resolve_weights(
            PATCH_WEIGHTS, weights_dir=config.model.init.weights_dir, progress=False)
        engine = HeatmapEngine(load_patch_classifier(patch_path), device,
                               patch_size=pipeline.patch_size, stride=pipeline.patch_stride,
                               batch_size=pipeline.heatmap_batch_size)
        engine_id = f"{sha256_file(patch_path)}:{pipeline.patch_size}:{pipeline.patch_stride}"
    cache = config.data.cache_dir or config.output_dir / "cache"
    train_items = prepare_exams(train_rows, pipeline, cache, engine, engine_id, config.seed,
                                advance)
    val_items = prepare_exams(val_rows, pipeline, cache, engine, engine_id, config.seed, advance)
    common = {"seed": config.seed, "with_heatmaps": heatmaps}
    train = BreastDataset(train_items, pipeline, train=True, noise_std=config.noise_std,
                          augment=config.augment, **common)  # type: ignore[arg-type]
    val = BreastDataset(val_items, pipeline, train=False, **common)  # type: ignore[arg-type]
    card = manifest_card(config, len(train_items), len(val_items), "exams")
    if patch_path is not None:
        card["heatmaps_patch_model_sha256"] = sha256_file(patch_path)
    return Datasets(train, val, card, patch_path)

