"""Every environment variable mammocli reads, in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

DEFAULT_WEIGHTS_URL = (
    "https://github.com/nyukat/breast_cancer_classifier/raw/"
    "6176ebea6950b0a953339593d2da417ab846dae0/"
)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    offline: bool
    weights_url: str | None
    debug: bool
    reference_dir: Path | None


def load_settings() -> Settings:
    """Read the environment now (not at import time, so tests can change it)."""
    cache = os.environ.get("MAMMOCLI_CACHE_DIR")
    ref = os.environ.get("MAMMOCLI_REFERENCE_DIR")
    return Settings(
        cache_dir=Path(cache) if cache else Path(platformdirs.user_cache_dir("mammocli")),
        offline=_flag("MAMMOCLI_OFFLINE"),
        weights_url=os.environ.get("MAMMOCLI_WEIGHTS_URL") or None,
        debug=_flag("MAMMOCLI_DEBUG"),
        reference_dir=Path(ref) if ref else None,
    )
