"""`mammocli info`: versions, devices, cache and settings. Downloads nothing."""

from __future__ import annotations

import json

import typer

from ..inference.environment import cpu_report as cpu_report  # re-exported for callers
from ..inference.environment import environment_report
from .common import handle_errors, write_stdout


def register(app: typer.Typer) -> None:
    @app.command("info")
    @handle_errors
    def info() -> None:
        """Show versions, available devices, the cache folder and settings (downloads nothing)."""
        write_stdout(json.dumps(environment_report(), indent=2))
