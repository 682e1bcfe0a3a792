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
    # Weights download (issue 4). Defaults suit real users; tests shrink the back-off.
    registry: Path | None = None  # MAMMOCLI_REGISTRY: a JSON manifest replacing the shipped one
    download_retries: int = 4  # MAMMOCLI_DOWNLOAD_RETRIES: extra attempts after a transient failure
    download_backoff: float = 1.0  # MAMMOCLI_DOWNLOAD_BACKOFF: first wait in s, doubled each retry
    download_timeout: float = 60.0  # MAMMOCLI_DOWNLOAD_TIMEOUT: connect/read timeout in s


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        from .errors import ConfigError

        raise ConfigError(f"{name}={raw!r} is not a number") from None


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
        registry=Path(reg) if (reg := os.environ.get("MAMMOCLI_REGISTRY")) else None,
        download_retries=max(0, int(_number("MAMMOCLI_DOWNLOAD_RETRIES", 4))),
        download_backoff=max(0.0, _number("MAMMOCLI_DOWNLOAD_BACKOFF", 1.0)),
        download_timeout=max(0.1, _number("MAMMOCLI_DOWNLOAD_TIMEOUT", 60.0)),
    )
