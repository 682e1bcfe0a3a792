"""What the library says while it works: the package logger and progress hooks.

The library reports, the CLI renders: library modules log through `log` and wrap long work in
`track(...)`, and report where an exam's computation is with `stage(...)`; nothing here draws
anything. `mammocli.console` (rendering) installs rich progress
bars with `set_progress_factory` when it is imported; without it, `track` is silent."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Literal, Protocol

log = logging.getLogger("mammocli")

Unit = Literal["steps", "bytes"]


class Tracker(Protocol):
    """One task's progress, as the renderer shows it."""

    def reset(self, total: float | None) -> None:
        """Start over (a retried download) with a new total (None: unknown)."""

    def advance(self, amount: float = 1, description: str | None = None) -> None:
        """`amount` more done; a new description replaces the old one."""


# (description, total, completed, unit) -> a context yielding the tracker, or None where the
# renderer shows nothing (e.g. stderr is no terminal).
ProgressFactory = Callable[[str, "float | None", float, Unit],
                           AbstractContextManager["Tracker | None"]]

_factory: ProgressFactory | None = None


def set_progress_factory(factory: ProgressFactory | None) -> None:
    """Install the renderer of progress (None: silent)."""
    global _factory
    _factory = factory


@contextmanager
def track(description: str, *, total: float | None = None, completed: float = 0,
          unit: Unit = "steps", enabled: bool = True) -> Iterator[Tracker | None]:
    """A progress task for the work inside the block; yields None when nothing is shown."""
    if not enabled or _factory is None:
        yield None
        return
    with _factory(description, total, completed, unit) as tracker:
        yield tracker


class StageHook(Protocol):
    """Told where the exam being computed is: `stage` is prepare, heatmaps or classify;
    `done` of `total` units (patches for heatmaps; 0 of 0 where there is no count)."""

    def __call__(self, stage: str, done: int = 0, total: int = 0) -> None: ...


# A context variable, not a global: a hook belongs to the run (and thread) that set it.
_stage_hook: ContextVar[StageHook | None] = ContextVar("mammocli_stage_hook", default=None)


@contextmanager
def stage_hook(hook: StageHook | None) -> Iterator[None]:
    """Call `hook` for every `stage(...)` reported inside the block (in this thread)."""
    token = _stage_hook.set(hook)
    try:
        yield
    finally:
        _stage_hook.reset(token)


def stage(name: str, done: int = 0, total: int = 0) -> None:
    """Report progress inside an exam; a no-op unless a caller installed a `stage_hook`."""
    hook = _stage_hook.get()
    if hook is not None:
        hook(name, done, total)
