"""The stderr console, logging and progress bars. stdout is reserved for results.

User-supplied strings (file, folder and exam names, messages that quote them, names from
tables or exam.yaml) are never parsed as rich markup: a name such as `L_CC[bold]x.png` or one
holding `[/]` must print verbatim. Print them with `say`, build styled lines with `line`, and
put them into tables through `cell`.

This is rendering, for the CLI only: library modules log through `mammocli.reporting` and report
progress there; importing this module installs its rich bars as that progress renderer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from . import reporting
from .reporting import Tracker, Unit, log

__all__ = ["cell", "download_progress", "line", "log", "progress", "say", "setup_logging",
           "stderr"]

stderr = Console(stderr=True)


def line(*parts: str | tuple[str, str]) -> Text:
    """A line of plain text; a `(text, style)` part is styled. Nothing in it is markup."""
    return Text.assemble(*parts)


def say(*parts: str | tuple[str, str]) -> None:
    """Print a line on stderr verbatim (see `line`), soft-wrapped: paths are never broken."""
    stderr.print(line(*parts), highlight=False, soft_wrap=True)


def cell(value: object) -> str:
    """A table cell or title holding user text: escaped, so the table shows it verbatim."""
    return escape(str(value))


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
        TextColumn("{task.description}", markup=False),  # descriptions may hold names
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
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )


class _RichTracker:
    def __init__(self, bar: Progress, task: TaskID) -> None:
        self.bar = bar
        self.task = task

    def reset(self, total: float | None) -> None:
        self.bar.reset(self.task, total=total)

    def advance(self, amount: float = 1, description: str | None = None) -> None:
        self.bar.update(self.task, advance=amount, description=description)


@contextmanager
def _rich_track(description: str, total: float | None, completed: float,
                unit: Unit) -> Iterator[Tracker | None]:
    bar = download_progress() if unit == "bytes" else progress()
    if bar is None:
        yield None
        return
    with bar:
        if not isinstance(bar, Progress):  # progress() is a no-op context off a terminal
            yield None
            return
        yield _RichTracker(bar, bar.add_task(description, total=total, completed=int(completed)))


reporting.set_progress_factory(_rich_track)
