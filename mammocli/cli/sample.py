"""`mammocli sample download`: the authors' four sample exams (16 PNGs), verified."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..console import say
from ..weights import download_samples, load_registry
from .common import handle_errors, write_stdout

sample_app = typer.Typer(name="sample", help="The authors' sample exams.", no_args_is_help=True)


@sample_app.command("download")
@handle_errors
def download(
    dest: Annotated[
        Path | None, typer.Option("--dest", help="Folder (default: <cache>/samples).")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or messages.")
    ] = False,
) -> None:
    """Download the 16 sample PNGs into four exam folders exam_<i>/<i>_<L|R>_<CC|MLO>.png."""
    registry = load_registry()
    root = download_samples(progress=not quiet, registry=registry, dest=dest)
    exams = sorted({e.exam for e in registry.samples if e.exam})
    if not quiet:
        say(f"{len(registry.samples)} sample images verified in {root}")
    write_stdout(json.dumps({"root": str(root), "exams": [str(root / e) for e in exams]},
                            indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(sample_app, name="sample")
