"""Where the cache keeps what: `<MAMMOCLI_CACHE_DIR>/weights/<file>` (official weights and the
user-weights record) and `<MAMMOCLI_CACHE_DIR>/samples/[<exam>/]<file>` (the sample exams)."""

from __future__ import annotations

from pathlib import Path

from ..settings import Settings, load_settings
from .registry import Entry

USER_FILE = "user_weights.json"


def weights_cache_dir(settings: Settings | None = None) -> Path:
    return (settings or load_settings()).cache_dir / "weights"


def samples_cache_dir(settings: Settings | None = None) -> Path:
    return (settings or load_settings()).cache_dir / "samples"


def sample_path(entry: Entry, root: Path) -> Path:
    """A sample file under `root` (the samples folder): in its exam's folder, if it has one."""
    return (root / entry.exam if entry.exam else root) / entry.name


def user_weights_file(settings: Settings | None = None) -> Path:
    return weights_cache_dir(settings) / USER_FILE
