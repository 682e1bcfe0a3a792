"""The pipeline sizes a model was trained at, read from the `model_card.json` that `mammocli
train` writes next to its exported weights.

A model trained at small windows gives meaningless results at the paper's sizes, so
`predict --weights-dir EXPORT` (or `--weights ROLE=EXPORT/FILE`) takes the sizes from the card
instead of a hand-written `--pipeline-config`. Decision when both are given: they must agree on
every size the card records (a mismatch is a ConfigError naming the key); the pipeline config
may still set what the card does not record (tta, batch sizes, seed). The heatmap batch size is a
speed setting, not a trained-at size, and is never taken from a card.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from ..config import PipelineConfig
from ..errors import ConfigError
from ..reporting import log
from .store import find_user_weights

MODEL_CARD = "model_card.json"
# The card's `config.pipeline` keys that change what the model sees (all PipelineSizes fields
# except heatmap_batch_size).
TRAINED_SIZES = ("cc_window", "mlo_window", "crop_iterations", "crop_buffer", "patch_size",
                 "patch_stride", "max_crop_noise", "max_crop_size_noise")


def _value(value: Any) -> object:
    return tuple(value) if isinstance(value, list) else value


def card_sizes(card: Path) -> dict[str, object]:
    """The sizes a card records (only those the training config set; the rest were the
    paper's defaults, which are also PipelineConfig's)."""
    try:
        doc = json.loads(card.read_text("utf-8"))
        pipeline = doc.get("config", {}).get("pipeline", {}) or {}
        if not isinstance(pipeline, dict):
            raise TypeError("config.pipeline is not a mapping")
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{card}: cannot read the model card ({exc})",
                          hint="restore it from the training run's export/ folder, or delete "
                               "it to run at the paper's sizes (or --pipeline-config)") from None
    known = {f.name for f in fields(PipelineConfig)}
    return {k: _value(v) for k, v in pipeline.items()
            if k in TRAINED_SIZES and k in known and v is not None}


def _card_folders(weights_dir: Path | None, overrides: Mapping[str, str]) -> list[Path]:
    """Folders whose card applies: --weights-dir, and the folder of each --weights file."""
    folders: list[Path] = [Path(weights_dir)] if weights_dir is not None else []
    for value in overrides.values():
        user = find_user_weights(value)
        path = Path(user.path) if user is not None else Path(value).expanduser()
        if path.is_file():
            folders.append(path.parent)
    unique: dict[Path, Path] = {}
    for folder in folders:
        unique.setdefault(folder.resolve(), folder)
    return list(unique.values())


def _explicit(pipeline_config: Path | None) -> dict[str, object]:
    """The keys the user's --pipeline-config sets (already validated by load_pipeline_config)."""
    if pipeline_config is None:
        return {}
    doc = yaml.safe_load(Path(pipeline_config).read_text()) or {}
    return {k: _value(v) for k, v in doc.items()} if isinstance(doc, dict) else {}


def trained_sizes(folders: Iterable[Path]) -> tuple[dict[str, object], dict[str, Path]]:
    """The sizes of every card in `folders` (they must agree) and the card of each size."""
    sizes: dict[str, object] = {}
    origin: dict[str, Path] = {}
    for folder in folders:
        card = folder / MODEL_CARD
        if not card.is_file():
            continue
        for key, value in card_sizes(card).items():
            if key in sizes and sizes[key] != value:
                raise ConfigError(
                    f"{card} and {origin[key]} disagree on {key} ({value} vs {sizes[key]}): "
                    "the models were trained at different sizes",
                    hint="use weights trained at the same pipeline sizes together")
            sizes[key], origin[key] = value, card
    return sizes, origin


def with_trained_sizes(config: PipelineConfig, pipeline_config: Path | None,
                       weights_dir: Path | None, overrides: Mapping[str, str]
                       ) -> PipelineConfig:
    """`config` with the sizes of the model cards next to the weights in use."""
    sizes, origin = trained_sizes(_card_folders(weights_dir, overrides))
    if not sizes:
        return config
    explicit = _explicit(pipeline_config)
    for key, value in sizes.items():
        if key in explicit and explicit[key] != value:
            raise ConfigError(
                f"{pipeline_config}: {key} = {explicit[key]}, but the model of "
                f"{origin[key]} was trained at {key} = {value}",
                hint=f"remove {key} from the pipeline config (the card's sizes are used), or "
                     "use weights trained at the sizes you want")
    log.info("pipeline sizes from %s: %s", ", ".join(sorted(set(map(str, origin.values())))),
             ", ".join(f"{k}={v}" for k, v in sizes.items()))
    return config.with_(**sizes)
