"""Official weights and sample data: registry (shipped in the wheel), download, verification, cache.

The pipeline calls `resolve_weights(name, weights_dir=...)` and records `weights_used(name, path)`.
"""

from __future__ import annotations

from ..hashing import git_blob_sha1, sha256_file
from .cache import samples_cache_dir, weights_cache_dir
from .fetch import RetryPolicy, download_samples, fetch_entry, resolve_weights, weights_used
from .registry import (
    IMAGE_IMAGE,
    IMAGE_IMAGEHEATMAPS,
    PATCH,
    VIEW_IMAGE,
    VIEW_IMAGEHEATMAPS,
    Entry,
    Registry,
    builtin_registry,
    load_registry,
)

__all__ = [
    "IMAGE_IMAGE", "IMAGE_IMAGEHEATMAPS", "PATCH", "VIEW_IMAGE", "VIEW_IMAGEHEATMAPS",
    "Entry", "Registry", "RetryPolicy", "builtin_registry", "download_samples", "fetch_entry",
    "git_blob_sha1",
    "load_registry", "resolve_weights", "sha256_file", "samples_cache_dir", "weights_cache_dir",
    "weights_used",
]
