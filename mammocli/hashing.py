"""The one place files are hashed (streamed, so weight files never sit in memory whole)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def _streamed(digest: hashlib._Hash, path: Path) -> str:
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's content, as results, model cards and user weights record it."""
    return _streamed(hashlib.sha256(), path)


def git_blob_sha1(path: Path) -> str:
    """SHA-1 of the git blob object: sha1(b"blob <size>\\0" + content), what `git ls-tree`
    lists, so official files are checked against the authors' repository itself."""
    size = Path(path).stat().st_size
    return _streamed(hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False), path)
