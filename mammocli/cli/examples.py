"""`mammocli examples make DIR`: the demo exams, training data and configs of the quickstart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import say
from ..synthetic.demo import make_demo
from .common import handle_errors

examples_app = typer.Typer(
    name="examples", no_args_is_help=True,
    help="Synthetic (non-patient) demo data to try every command on: exams, a root, "
         "training sets and configs sized for a 2-core CPU.")


@examples_app.command("make")
@handle_errors
def make(
    folder: Annotated[Path, typer.Argument(
        help="Folder to write the demo into (created; must be empty unless --overwrite).",
        show_default=False)],
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Rewrite the demo's files in a folder that is not empty (other "
        "files there are left alone).")] = False,
    full_size: Annotated[bool, typer.Option(
        "--full-size", help="Also write an exam at the authors' image size (3328 x 2560, "
        "~70 MB), for a run at the paper's pipeline sizes (minutes on a CPU).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing.")] = False,
) -> None:
    """Write the demo: exam/ (one four-view PNG exam), root/ (four exams), data/ (patch and
    breast training sets), pipeline.yaml, train_*.yaml, labels.csv and scores.csv."""
    demo = make_demo(folder, overwrite=overwrite, full_size=full_size)
    if quiet:
        return
    say(f"wrote the demo (synthetic, not patient data) to {demo.folder}:")
    for name in demo.written:
        say(f"  {name}")
    say("next:")
    for command in demo.next_commands:
        say(f"  {command}")


def register(app: typer.Typer) -> None:
    app.add_typer(examples_app, name="examples")
