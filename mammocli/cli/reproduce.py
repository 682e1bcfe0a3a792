"""`mammocli reproduce`: our values beside the authors' published ones, pass/fail per value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..analysis.reproduce import (
    ReproduceReport,
    load_gmic_manifest,
    load_manifest,
    reproduce,
    reproduce_gmic,
)
from ..console import cell, say, stderr
from ..errors import ConfigError
from ..inference.devices import select_device, tune_allocator
from ..vocabulary import Variant
from .common import handle_errors, write_stdout

_SHORT: dict[str, str] = {Variant.IMAGE_ONLY: "image", Variant.IMAGE_AND_HEATMAPS: "image+heatmaps"}


def _table(report: ReproduceReport) -> Table:
    # The shipped manifest holds the authors' published values; another one holds its own.
    expected = "published" if report.manifest == "builtin" else "expected"
    table = Table(title=f"mammocli reproduce (|diff| <= {report.tolerance:g})")
    for col, justify in (("case", "left"), ("model", "left"), ("label", "left"),
                         ("ours", "right"), (expected, "right"), ("diff", "right"),
                         ("", "left")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in report.rows:
        # Four decimals: the precision of the authors' published table.
        table.add_row(cell(row.case), cell(_SHORT.get(row.variant, row.variant)),
                      cell(row.label), f"{row.ours:.4f}",
                      f"{row.expected:.4f}", f"{row.diff:+.4f}",
                      "[green]pass[/]" if row.passed else "[bold red]FAIL[/]")
    return table


def register(app: typer.Typer) -> None:
    @app.command("reproduce")
    @handle_errors
    def reproduce_cmd(
        manifest: Annotated[Path | None, typer.Option(
            "--manifest", help="JSON listing exams, single image and expected values "
            "(default: the authors' sample exams and published numbers).")] = None,
        device: Annotated[str, typer.Option(
            "--device", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
        model: Annotated[str, typer.Option(
            "--model", help="dmv-cnn: the DMV-CNN's run.sh and run_single.sh (default); gmic: "
            "GMIC model 1 on sample exam 0, every image (the README rows that the current "
            "pipeline reproduces).")] = "dmv-cnn",
        quiet: Annotated[bool, typer.Option(
            "--quiet", "-q", help="Only errors and the verdict on stderr.")] = False,
    ) -> None:
        """Download the official weights and the authors' sample exams, run them as the authors'
        run.sh and run_single.sh do, and compare with their published outputs. Exit 0 only if
        every value agrees within the tolerance (the published numbers come from a GPU)."""
        tune_allocator()
        if model == "gmic":
            gmic, source = load_gmic_manifest(manifest)
            report = reproduce_gmic(gmic, source=source, device=select_device(device),
                                    progress=not quiet)
        elif model == "dmv-cnn":
            spec, source = load_manifest(manifest)
            report = reproduce(spec, source=source, device=select_device(device),
                               progress=not quiet)
        else:
            raise ConfigError(f"unknown --model {model!r}", hint="use dmv-cnn or gmic")
        if not quiet:
            stderr.print(_table(report))
        write_stdout(json.dumps(report.as_dict(), indent=2))
        failed = report.failures
        if failed:
            worst = max(failed, key=lambda r: abs(r.diff))
            say(("reproduce failed:", "bold red"),
                f" {len(failed)} of {len(report.rows)} values "
                f"differ from the expected ones by more than {report.tolerance:g} (worst: "
                f"{worst.case} {worst.variant} {worst.label}, ours {worst.ours:.4f} vs "
                f"{worst.expected:.4f})")
            raise typer.Exit(1)
        say(("reproduce passed:", "green"), f" all {len(report.rows)} values within "
            f"{report.tolerance:g} of the expected ones ({report.duration_s:.0f} s)")
