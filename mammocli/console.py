"""The stderr console, logging and progress bars. stdout is reserved for results.

User-supplied strings (file, folder and exam names, messages that quote them, names from
tables or exam.yaml) are never parsed as rich markup: a name such as `L_CC[bold]x.png` or one
holding `[/]` must print verbatim. Print them with `say`, build styled lines with `line`, and
put them into tables through `cell`.

This is rendering, for the CLI only: library modules log through `mammocli.reporting` and report
progress there; importing this module installs its rich bars as that progress renderer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from types import TracebackType
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

__all__ = ["ExamProgress", "cell", "download_progress", "eta_text", "exam_line", "line", "log",
           "progress", "say", "setup_logging", "stage_text", "stderr"]

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


def eta_text(seconds: float | None) -> str:
    """h:mm:ss, or ? while there is nothing to estimate from."""
    if seconds is None:
        return "?"
    total = max(round(seconds), 0)
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def stage_text(stage: str, done: int = 0, total: int = 0) -> str:
    """What an exam is doing: `heatmaps 300/1200 patches`, `classify`, ..."""
    if stage == "heatmaps" and total:
        return f"heatmaps {done}/{total} patches"
    return stage


def exam_line(k: int, n: int, label: str, status: str, seconds: float,
              eta: float | None) -> str:
    """The line a finished exam gets in a log: `exam 3/10 NAME ok 12.3 s, ETA 0:01:26`.
    `label` must already be printable (outputs.schema.printable): it is a folder name."""
    return f"exam {k}/{n} {label} {status} {seconds:.1f} s, ETA {eta_text(eta)}"


class ExamProgress:
    """Progress of a run of `total` exams on stderr. On a terminal a bar shows the stage inside
    the current exam and an ETA; elsewhere (nohup, Slurm, CI logs) plain lines: one per
    finished exam, and a stage line when nothing was printed for `stage_every` seconds.
    `enabled=False` (--quiet) prints nothing. Use as a context; `stage` is a
    `reporting.StageHook`."""

    def __init__(self, total: int, *, enabled: bool = True, terminal: bool | None = None,
                 stage_every: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self.total = total
        self.enabled = enabled
        self.terminal = stderr.is_terminal if terminal is None else terminal
        self.stage_every = stage_every
        self.clock = clock
        self.finished = 0
        self.started = self.last_line = self.exam_started = clock()
        self.first_done: float | None = None
        self.last_done = float("-inf")
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> ExamProgress:
        if self.enabled and self.terminal:
            self.bar = Progress(
                TextColumn("{task.description}", markup=False),  # descriptions may hold names
                BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}", markup=False),
                console=stderr, transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task(self._where("starting"), total=self.total, eta="?")
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.__exit__(kind, value, tb)
            self.bar = None

    def _where(self, what: str) -> str:
        return f"exam {min(self.finished + 1, self.total)}/{self.total}: {what}"

    def eta(self) -> float | None:
        """Seconds left: the mean time of the exams after the first (whose time includes
        loading the models and warming up), or the first exam's time while only one is done."""
        left = self.total - self.finished
        if self.finished == 0 or self.first_done is None:
            return None
        if left <= 0:
            return 0.0
        if self.finished == 1:
            per_exam = self.first_done - self.started
        else:
            per_exam = (self.clock() - self.first_done) / (self.finished - 1)
        return left * per_exam

    def stage(self, stage: str, done: int = 0, total: int = 0) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if stage == "prepare":
            self.exam_started = now
        text = stage_text(stage, done, total)
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, description=self._where(text))
        elif now - self.last_line >= self.stage_every:
            self.last_line = now
            say(f"{self._where(text)}, {now - self.exam_started:.0f} s in this exam")

    def exam_done(self, label: str, status: str) -> None:
        """Exam `label` (printable) finished with `status` (ok, failed, skipped)."""
        now = self.clock()
        seconds = now - max(self.exam_started, self.last_done)
        self.finished += 1
        if self.first_done is None:
            self.first_done = now
        self.last_done = self.exam_started = now
        if not self.enabled:
            return
        eta = self.eta()
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=1, description=self._where("prepare"),
                            eta=eta_text(eta))
        else:
            self.last_line = now
            say(exam_line(self.finished, self.total, label, status, seconds, eta))


class _LineTracker:
    """A download off a terminal: a line at every 10 % (every 10 MiB if the size is
    unknown), so a log shows that bytes are arriving."""

    def __init__(self, description: str, total: float | None, completed: float) -> None:
        self.description = description
        self.total = total
        self.done = completed
        self.step = 0

    def reset(self, total: float | None) -> None:
        self.total, self.done, self.step = total, 0, 0

    def advance(self, amount: float = 1, description: str | None = None) -> None:
        self.done += amount
        if description:
            self.description = description
        mib = self.done / (1 << 20)
        if self.total:
            step = min(int(self.done * 10 // self.total), 10)
            if step > self.step:
                self.step = step
                say(f"{self.description}: {step * 10} % of {self.total / (1 << 20):.1f} MiB")
        elif int(mib // 10) > self.step:
            self.step = int(mib // 10)
            say(f"{self.description}: {mib:.0f} MiB")


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
        yield _LineTracker(description, total, completed) if unit == "bytes" else None
        return
    with bar:
        if not isinstance(bar, Progress):  # progress() is a no-op context off a terminal
            yield None
            return
        yield _RichTracker(bar, bar.add_task(description, total=total, completed=int(completed)))


reporting.set_progress_factory(_rich_track)
