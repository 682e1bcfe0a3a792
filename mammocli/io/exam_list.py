"""Exam lists (`exams.csv`, issue 16): the exams of a run named one per row, so that a task of a
large archive reads its own exams' folders and never walks the whole tree.

The file has a header row with an `exam` column and an optional `id` column:

    exam,id
    2019/site-a/exam-0001,exam-0001
    1.2.826.0.1.3680043.8.498.1234,

`exam` is an exam folder (relative to the CSV's folder, or absolute; '/'-separated) or a DICOMweb
StudyInstanceUID. A value is read as a UID when it is one (digits and dots, at most 64
characters) with at least three components and no '/'; write `./1.2.3` for a folder of that
name. `id` is the exam id of results and shards; when empty, it is the folder's name (a UID's is
the id retrieval gives it: `study-<hash>`). Blank lines and rows whose `exam` starts with '#'
are skipped. Errors give the file and the line; a UID is never shown.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InputError, MammocliError
from ..outputs.files import atomic_write_text
from ..views import VIEWS
from .csv_tables import read_csv
from .dicom.discover import is_valid_uid
from .dicom.options import DicomOptions
from .discover import discover
from .exam import ExamProblem, ExamSource

__all__ = ["EXAM_COLUMN", "ID_COLUMN", "ExamEntry", "ExamList", "exam_source", "exam_sources",
           "looks_like_study_uid", "read_exam_list", "write_exam_list"]

EXAM_COLUMN = "exam"
ID_COLUMN = "id"


def looks_like_study_uid(value: str) -> bool:
    """True when an `exam` cell names a DICOMweb study rather than a folder (see above)."""
    return "/" not in value and value.count(".") >= 2 and is_valid_uid(value)


@dataclass(frozen=True)
class ExamEntry:
    """One row of an exam list: a folder (`path`) or a DICOMweb study (`study_uid`)."""

    exam_id: str
    line: int
    where: str  # "exams.csv, line 3": for messages
    path: Path | None = None  # the exam folder (resolved against the CSV's folder)
    relative: str = ""  # the folder as written in the CSV (a user's label: safe to show)
    study_uid: str | None = None  # never shown: a UID can be looked up in a PACS


@dataclass(frozen=True)
class ExamList:
    """The rows of an exam list. Plan results with `base` as the root (`plan_exams`), so that
    result records name exam folders relative to the CSV's folder."""

    path: Path
    base: Path
    entries: list[ExamEntry]

    @property
    def folders(self) -> list[ExamEntry]:
        return [e for e in self.entries if e.path is not None]

    @property
    def studies(self) -> list[ExamEntry]:
        return [e for e in self.entries if e.study_uid is not None]


def read_exam_list(path: Path, options: DicomOptions | None = None) -> ExamList:
    """Read an exam list; InputError (located) for a missing column, an empty row value or a
    duplicate exam or id. Folders are not checked here (a task reads only its shard's)."""
    from .dicomweb import exam_id_for  # requests is imported only for lists that need it

    path = Path(path)
    table = read_csv(path)
    if EXAM_COLUMN not in table.header:
        raise InputError(f"{path.name}: no '{EXAM_COLUMN}' column in the header row",
                         hint=f"the first row names the columns: {EXAM_COLUMN}[,{ID_COLUMN}]; "
                              f"columns present: {', '.join(table.header)}")
    base = path.parent
    base_text = str(base)
    entries: list[ExamEntry] = []
    ids: dict[str, int] = {}
    exams: dict[str, int] = {}
    for row in table.rows:
        where = table.where(row.line)
        value = row.values.get(EXAM_COLUMN, "")
        given_id = row.values.get(ID_COLUMN, "")
        if value.startswith("#") or not (value or given_id):
            continue
        if not value:
            raise InputError(f"{where}: empty '{EXAM_COLUMN}' value",
                             hint="give the exam folder or the StudyInstanceUID")
        if looks_like_study_uid(value):
            key, shown = f"study:{value}", "this study"
            entry = ExamEntry(given_id or exam_id_for(value, options), row.line, where,
                              study_uid=value)
        else:
            folder = Path(os.path.join(base_text, value))  # one parse per row: 100,000s of rows
            # one folder may hold several studies: one row each, told apart by the id
            key, shown = f"folder:{os.path.normpath(folder)}\0{given_id}", repr(value)
            exam_id = given_id or folder.name or Path(os.path.abspath(folder)).name or "exam"
            entry = ExamEntry(exam_id, row.line, where, path=folder, relative=value)
        if key in exams:
            raise InputError(f"{where}: {shown} is also on line {exams[key]}",
                             hint="list each exam once")
        if entry.exam_id in ids:
            raise InputError(f"{where}: exam id {entry.exam_id!r} is also used on line "
                             f"{ids[entry.exam_id]}",
                             hint=f"give each exam its own id in the '{ID_COLUMN}' column")
        exams[key] = ids[entry.exam_id] = row.line
        entries.append(entry)
    if not entries:
        raise InputError(f"{path.name}: no exam listed", hint="add one row per exam")
    return ExamList(path, base, entries)


def _failed(entry: ExamEntry, message: str, hint: str | None = None) -> ExamSource:
    folder = entry.path if entry.path is not None else Path(entry.exam_id)
    return ExamSource(exam_id=entry.exam_id, folder=folder, images={v: () for v in VIEWS},
                      problem=ExamProblem(f"{entry.where}: {message}", hint))


def exam_source(entry: ExamEntry, options: DicomOptions | None = None) -> ExamSource:
    """The exam of one folder row, by the same discovery as `predict PATH` on that folder (no
    walk outside it). Any problem (no such folder, no exam, several) becomes the exam's own
    `problem`: it fails alone, the rest of the list runs."""
    if entry.path is None:
        raise ValueError("a DICOMweb row is retrieved, not discovered")
    if not entry.path.is_dir():
        what = "no such folder" if not entry.path.exists() else "not a folder"
        return _failed(entry, f"{entry.relative}: {what}",
                       "fix the row, or run mammocli scan again to rebuild the list")
    try:
        exams = discover(entry.path, options=options).exams
    except MammocliError as exc:
        return _failed(entry, exc.message, exc.hint)
    except OSError as exc:
        return _failed(entry, f"{entry.relative}: cannot read the folder ({exc.strerror})")
    if len(exams) > 1:
        same = [e for e in exams if e.exam_id == entry.exam_id]
        if len(same) != 1:
            return _failed(entry, f"{entry.relative}: the folder holds {len(exams)} exams",
                           "give the id of one of them in the 'id' column (mammocli scan "
                           "does), or use the same --group-by as when the list was made")
        exams = same
    return replace(exams[0], exam_id=entry.exam_id)


def exam_sources(entries: Sequence[ExamEntry],
                 options: DicomOptions | None = None) -> list[ExamSource]:
    """`exam_source` of each folder row, in list order (DICOMweb rows are left to retrieval)."""
    return [exam_source(e, options) for e in entries if e.path is not None]


def write_exam_list(path: Path, rows: Sequence[tuple[str, str]]) -> None:
    """Write (exam, id) rows as an exam list, atomically (the one writer, `outputs.files`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([EXAM_COLUMN, ID_COLUMN])
    writer.writerows(rows)
    atomic_write_text(Path(path), buffer.getvalue())
