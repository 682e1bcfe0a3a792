"""Shared CLI plumbing: error rendering and exit codes, common options."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from ..console import say, setup_logging, stderr
from ..errors import EXIT_INTERRUPTED, MammocliError
from ..settings import load_settings

F = TypeVar("F", bound=Callable[..., Any])


def report_error(exc: MammocliError, prefix: str = "error") -> None:
    # Messages quote file and exam names: plain text, never markup (see console.py).
    say((f"{prefix}:", "bold red"), " ", exc.message)
    if exc.hint:
        say("  ", ("hint:", "yellow"), " ", exc.hint)
    if load_settings().debug:
        stderr.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)


def handle_errors(func: F) -> F:
    """Turn expected errors into a clear message and the documented exit code.

    Unexpected exceptions are bugs and keep their traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging(quiet=bool(kwargs.get("quiet")), verbose=bool(kwargs.get("verbose")))
        try:
            return func(*args, **kwargs)
        except MammocliError as exc:
            report_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            stderr.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def write_stdout(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
