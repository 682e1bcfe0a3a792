"""Trained weights in the official file formats, plus a JSON model card.

The patch classifier is saved as a bare DenseNet state dict (`sample_patch_model.p`), breast
models as `{"model": state_dict}` (all six four_view_resnet prefixes, as the authors' files)
under the official names, so `mammocli predict --weights-dir EXPORT` and
`mammocli weights register` take them unchanged.
"""

from __future__ import annotations

import io
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..hashing import sha256_file
from ..models.loading import load_strict
from ..outputs.files import atomic_write_bytes, atomic_write_text
from ..vocabulary import PATCH_WEIGHTS
from ..weights.card import MODEL_CARD
from .config import Task, TrainConfig
from .tasks import new_model, official_name

CARD = MODEL_CARD  # predict reads the pipeline sizes back from it (weights/card.py)


def export(model: nn.Module, config: TrainConfig, folder: Path, *, metrics: dict[str, Any],
           data: dict[str, Any], init_source: str, patch_weights: Path | None = None) -> Path:
    """Write the weight file(s) and the card into `folder`; returns the weight file's path."""
    folder = Path(folder)
    name = official_name(config)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload: Any = state if config.task is Task.PATCH else {"model": state}
    if config.task is Task.GMIC:  # flat, plus the official files' extra key
        from .gmic_task import export_payload

        payload = export_payload(state, init_source)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(folder / name, buffer.getvalue())
    # Check that it loads back strictly into a fresh model of the official architecture.
    load_strict(new_model(config), state, name)
    if config.task is Task.GMIC:
        from ..models.gmic_loading import load_gmic

        load_gmic(folder / name, config.gmic.member)  # as `predict --model gmic` reads it
    files = {name: sha256_file(folder / name)}
    if patch_weights is not None and config.task is Task.BREAST:
        # The image+heatmaps model needs the patch model its heatmaps were computed with.
        target = folder / PATCH_WEIGHTS
        if Path(patch_weights).resolve() != target.resolve():
            shutil.copyfile(patch_weights, target)
        files[PATCH_WEIGHTS] = sha256_file(target)
    card = {
        "mammocli_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "task": config.task.value,
        "weights": {"files": files, "format": "official", "initialised_from": init_source},
        "data": data,
        "metrics": metrics,
        "config": json.loads(config.model_dump_json(by_alias=True)),
        "environment": {"torch": torch.__version__, "python": platform.python_version()},
        "note": "Research use only: not a medical device.",
    }
    atomic_write_text(folder / CARD, json.dumps(card, indent=2) + "\n")
    return folder / name
