"""What building the datasets returns: the datasets and what the model card says about them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ..hashing import sha256_file
from .config import TrainConfig


@dataclass
class Datasets:
    train: Dataset[Any]
    val: Dataset[Any]
    card: dict[str, Any] = field(default_factory=dict)  # what the model card says about data
    patch_weights: Path | None = None  # the patch model behind the heatmaps, if any


def manifest_card(config: TrainConfig, n_train: int, n_val: int, unit: str) -> dict[str, Any]:
    manifests = {"train": str(config.data.train), "train_sha256": sha256_file(config.data.train)}
    if config.data.val is not None:
        manifests.update(val=str(config.data.val), val_sha256=sha256_file(config.data.val))
    return {"task": config.task.value, **manifests, f"train_{unit}": n_train,
            f"val_{unit}": n_val}
