"""Small training configs over synthetic data, shared by the training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

# Tiny windows: the real ResNet-22 and DenseNet-121, at sizes a 2-core CPU trains in seconds.
TINY_PIPELINE = {"cc_window": [96, 72], "mlo_window": [104, 64], "crop_iterations": 5,
                 "crop_buffer": 3, "max_crop_noise": [6, 6], "max_crop_size_noise": 6,
                 "patch_size": 32, "patch_stride": 16, "heatmap_batch_size": 64}


def breast_config(manifest: Path, out: Path, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "task": "breast",
        "data": {"train": str(manifest), "val_fraction": 0.25,
                 "cache_dir": str(manifest.parent / "cache")},
        "output_dir": str(out),
        "model": {"kind": "view-wise", "variant": "image-only", "init": {"from": "random"}},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "pipeline": dict(TINY_PIPELINE),
        "epochs": 2,
        "batch_size": 2,
        "seed": 7,
        "device": "cpu",
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return doc


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def model_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
