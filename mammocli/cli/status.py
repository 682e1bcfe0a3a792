"""`mammocli status RESULTS_DIR [--exams exams.csv]`: the ledger of a `-o DIR/` folder."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ..outputs.ledger import LedgerStatus
from .common import handle_errors, write_stdout


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours / 24:.1f} days"


def render(status: LedgerStatus, folder: str) -> str:
    """The status as lines of plain text (exam ids only in the missing list, capped)."""
    lines = [f"results in {folder}"]
    lines.append(f"  done     {status.done}")
    lines.append(f"  failed   {status.failed}" + "".join(
        f"\n    {name:<14} {count}" for name, count in status.failed_by_class.items()))
    lines.append(f"  running  {status.running}")
    if status.missing is not None:
        lines.append(f"  missing  {status.missing} of {status.listed} listed")
        if status.not_listed:
            lines.append(f"  not in the exam list: {status.not_listed} record(s)")
    rate = status.exams_per_hour
    lines.append(f"  rate     {rate:.1f} exams/h" if rate else
                 "  rate     unknown (fewer than two exams finished in the last hour)")
    if status.mean_duration_s is not None:
        lines.append(f"  mean     {status.mean_duration_s:.1f} s per exam and task")
    if status.eta_s is not None:
        lines.append("  ETA      " + ("finished" if status.eta_s == 0 and not status.missing
                                     else _duration(status.eta_s)))
    if status.stale_locks:
        lines.append(f"  {status.stale_locks} lock file(s) of killed runs (harmless: the next "
                     "run takes them over)")
    if status.unreadable:
        lines.append(f"  {status.unreadable} .json file(s) that are not result records")
    if status.missing_ids:
        shown = status.missing_ids[:10]
        more = len(status.missing_ids) - len(shown)
        lines.append("  missing: " + ", ".join(shown) + (f" (and {more} more)" if more else ""))
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("status")
    @handle_errors
    def status(
        results: Annotated[Path, typer.Argument(help="A results folder written by predict -o "
                                                     "DIR/.")],
        exams: Annotated[Path | None, typer.Option(
            "--exams", help="The exam list (exams.csv) of the runs: adds missing exams and "
                            "the ETA.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")
                           ] = False,
    ) -> None:
        """Show a results folder's ledger: done, failed (by error class), running, missing,
        exams per hour and the ETA.

        RESULTS is the folder of predict -o DIR/ (one <exam_id>.json per exam, running exams
        hold a lock in DIR/.locks). With --exams, exams without a record are counted as
        missing and the ETA is the time to finish them at the rate of the last hour."""
        from ..io.exam_list import read_exam_list
        from ..outputs.ledger import ledger_status, read_ledger

        expected = None if exams is None else [e.exam_id for e in read_exam_list(exams).entries]
        report = ledger_status(read_ledger(results), expected)
        if as_json:
            write_stdout(json.dumps(asdict(report), indent=2))
        else:
            write_stdout(render(report, str(results)))
