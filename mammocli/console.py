"""The stderr console, logging and progress bars. stdout is reserved for results."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

stderr = Console(stderr=True)
log = logging.getLogger("mammocli")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    log.handlers.clear()
    handler = RichHandler(console=stderr, show_path=False, show_time=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def progress(enabled: bool = True) -> Any:
    """A rich Progress on stderr, or a no-op context when disabled or stderr is no terminal."""
    if not enabled or not stderr.is_terminal:
        return nullcontext(None)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )


def download_progress(enabled: bool = True) -> Progress | None:
    """A byte-level progress bar (size, speed, time left) on stderr, or None when disabled or
    stderr is no terminal (logs and CI output stay clean)."""
    if not enabled or not stderr.is_terminal:
        return None
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )
