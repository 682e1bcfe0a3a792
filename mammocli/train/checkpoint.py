"""Training checkpoints: everything needed to continue exactly where a run stopped.

Saved atomically (a crash never leaves a half-written checkpoint) and read back with
`weights_only=True`: a checkpoint is plain tensors and numbers, never executable pickle. The
`model` entry is a state dict in the official layout, so a checkpoint also serves as
`init: {from: checkpoint}` for another run.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..outputs.files import atomic_write_bytes

LAST = "last.pt"
BEST = "best.pt"


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {path}",
                          hint="start without --resume, or point output_dir at the earlier run")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or "model" not in obj or "state" not in obj:
        raise ConfigError(f"{path}: not a mammocli training checkpoint")
    return obj


def load_best(path: Path) -> dict[str, Any]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or "model" not in obj:
        raise ConfigError(f"{path}: not a mammocli best-model checkpoint")
    return obj
