"""`mammocli scan ROOT -o exams.csv`: an archive's exam list, from one walk (headers only)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Annotated

import typer

from ..console import say
from ..io.dicom.options import DicomOptions, GroupBy
from ..io.exam import SkippedFile
from ..outputs.schema import printable
from .common import handle_errors


def _relative(folder: Path, base: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(folder), os.path.abspath(base))).as_posix()


def register(app: typer.Typer) -> None:
    @app.command("scan")
    @handle_errors
    def scan(
        root: Annotated[Path, typer.Argument(help="The archive: any tree of DICOM files and "
                                                  "PNG exam folders.")],
        output: Annotated[Path, typer.Option("-o", "--output", help="The exam list to write "
                                             "(exams.csv: columns exam,id).")],
        skipped: Annotated[Path | None, typer.Option(
            "--skipped", help="Where to write the folders that are no exam, with the reason "
                              "(default: <output stem>.skipped.csv).")] = None,
        workers: Annotated[int | None, typer.Option(
            "--workers", min=1, help="Processes reading headers (default: the CPUs).")] = None,
        group_by: Annotated[GroupBy, typer.Option(
            "--group-by", help="DICOM: how files form exams (as predict --group-by).")
        ] = GroupBy.AUTO,
        overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing lists.")
                             ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on stderr.")
                         ] = False,
    ) -> None:
        """Walk an archive once (DICOM headers only, in parallel) and write the exam list for
        predict --exams, with why each other folder is no exam.

        Exam ids are the ones predict ROOT gives, and paths are relative to the list's folder,
        so the list can move with the archive. Run it once per archive (or after new exams
        arrive); every task of a cluster run then reads only its own exams' folders.
        """
        from ..inference.scan_tree import scan_archive
        from ..io.exam_list import write_exam_list
        from ..outputs.files import atomic_write_text, check_distinct, check_file_target

        skipped = skipped or output.with_name(output.stem + ".skipped.csv")
        check_distinct({"-o": output, "--skipped": skipped})
        check_file_target(output, "-o", overwrite=overwrite)
        check_file_target(skipped, "--skipped", overwrite=overwrite)
        result = scan_archive(root, options=DicomOptions(group_by=group_by), workers=workers)
        base = output.parent
        rows, not_exams = [], list(result.not_exams)
        for exam in result.exams:
            row = (_relative(exam.folder, base), exam.exam_id)
            try:
                "".join(row).encode("utf-8")
            except UnicodeEncodeError:  # a CSV is text: such a name cannot be listed
                not_exams.append(SkippedFile(printable(_relative(exam.folder, root)),
                                             "the folder's name is not valid UTF-8; rename it"))
                continue
            rows.append(row)
        write_exam_list(output, rows)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["folder", "reason"])
        writer.writerows((printable(s.relative), printable(s.reason)) for s in not_exams)
        atomic_write_text(skipped, buffer.getvalue())
        if not quiet:
            say(f"{len(rows)} exam(s) listed in {output}; {len(not_exams)} "
                f"folder(s) with no exam in {skipped}")
            if result.problems:
                say(f"  {len(result.problems)} exam(s) will fail (predict records why), e.g. "
                    f"{result.problems[0]}")
            say(f"  {result.files} file(s) read in {result.seconds:.1f} s "
                f"({result.files_per_second:.0f} files/s)")
