"""Exam discovery: an exam folder, or a root holding many exam folders or DICOM studies.

PNG exam folders are read by `png_exam`, DICOM trees by `dicom_discover`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, InputError, MammocliError
from ..views import VIEWS, View
from .csv_tables import read_records
from .dicom.discover import FileMapper, discover_dicom_exams
from .dicom.options import DicomOptions
from .exam import ExamProblem, ExamSource, SkippedFile
from .png_exam import EXAM_FILE, looks_like_png_exam, read_exam_folder, view_from_name
from .walk import list_folder

__all__ = ["Discovery", "discover", "discover_exams", "read_exam_folder", "read_views_csv",
           "view_from_name"]


@dataclass(frozen=True)
class Discovery:
    """What a path holds: the exams, and the folders of a root left out (with the reason)."""

    exams: list[ExamSource]
    ignored: list[SkippedFile] = field(default_factory=list)


def discover_exams(path: Path, *, options: DicomOptions | None = None,
                   views: Mapping[str, View] | None = None) -> list[ExamSource]:
    """The exams of `discover` (for callers that do not report ignored folders)."""
    return discover(path, options=options, views=views).exams


def _png_exam(folder: Path) -> ExamSource:
    """One folder's exam; any error reading it becomes that exam's problem, never the batch's."""
    try:
        return read_exam_folder(folder)
    except MammocliError as exc:
        problem = ExamProblem(exc.message, exc.hint)
    except OSError as exc:
        problem = ExamProblem(f"cannot read the exam folder ({exc.strerror})")
    except Exception as exc:  # noqa: BLE001 - a bug in one exam must not end the batch
        problem = ExamProblem(f"internal error reading the exam folder ({type(exc).__name__})",
                              hint="please report this with MAMMOCLI_DEBUG=1 output")
    return ExamSource(exam_id=folder.name, folder=folder, images={v: () for v in VIEWS},
                      problem=problem)


def discover(path: Path, *, options: DicomOptions | None = None,
             views: Mapping[str, View] | None = None,
             map_files: FileMapper | None = None) -> Discovery:
    """Exams under `path` in sorted order, and the folders of a root that hold none.

    `path` is one PNG exam folder, a root of PNG exam folders, or any tree of DICOM files (one
    exam per study). `views` maps DICOM files (paths relative to `path`, '/'-separated) to views,
    overriding their headers (see `read_views_csv`). Links are followed only inside `path`.
    `map_files` reads DICOM headers (see `discover_dicom_exams`).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise ConfigError(f"{path}: expected a folder holding an exam (or many exam folders)")
    if looks_like_png_exam(path):
        return Discovery([_png_exam(path)])
    try:
        entries = list_folder(path)
    except OSError as exc:
        raise InputError(f"{path.name}: cannot list the folder ({exc.strerror})") from exc
    ignored = [SkippedFile(e.path.name, e.reason) for e in entries
               if e.kind == "skipped" and not e.hidden]
    subfolders = [e.path for e in entries if e.kind == "folder" and not e.hidden]
    png_folders = [d for d in subfolders if looks_like_png_exam(d)]
    exams = [_png_exam(d) for d in png_folders]
    dicom_exams, problems = discover_dicom_exams(path, options=options, views=views,
                                                 exclude=png_folders, map_files=map_files)
    exams.extend(dicom_exams)
    if not exams:
        unique = {p.relative: p for p in ignored + problems}.values()
        detail = "".join(f"\n  {p.relative}: {p.reason}" for p in list(unique)[:10])
        raise InputError(
            f"{path.name}: no exam found (no {EXAM_FILE}, no image named after a view and no "
            f"usable DICOM study){detail}",
            hint="name files like L_CC.png, R-MLO.png, list them per view in exam.yaml, or "
                 "point to a folder of DICOM mammograms",
        )
    used = [e.folder for e in dicom_exams]
    for folder in subfolders:
        if folder in png_folders or any(u == folder or folder in u.parents or u in
                                        folder.parents for u in used):
            continue
        ignored.append(SkippedFile(folder.name, _why_no_exam(folder, path, problems)))
    return Discovery(sorted(exams, key=lambda e: (str(e.folder), e.exam_id)),
                     sorted(ignored, key=lambda s: s.relative))


def _why_no_exam(folder: Path, root: Path, problems: list[SkippedFile]) -> str:
    prefix = folder.relative_to(root).as_posix() + "/"
    inside = [p for p in problems if p.relative.startswith(prefix)]
    if not inside:
        return "no exam: no exam.yaml, no image named after a view, no DICOM file"
    first = inside[0]
    more = f" (and {len(inside) - 1} more)" if len(inside) > 1 else ""
    return (f"no exam: {len(inside)} file(s) not used, e.g. "
            f"{first.relative.removeprefix(prefix)}: {first.reason}{more}")


def read_views_csv(csv_path: Path) -> dict[str, View]:
    """A `--views-csv` file: rows `file,view` (a header row is optional); view L-CC, R-MLO ...

    File paths are relative to the folder given to `discover_exams`.
    """
    csv_path = Path(csv_path)
    try:
        records = read_records(csv_path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{csv_path}: cannot read the views CSV ({exc})") from exc
    mapping: dict[str, View] = {}
    for record in records:
        number = record.line
        cells = [c.strip() for c in record.cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) != 2:
            raise ConfigError(f"{csv_path.name} line {number}: expected 2 columns: file,view")
        name, text = cells
        try:
            view = View(text.upper().replace("_", "-"))
        except ValueError as exc:
            if number == 1:
                continue  # header row
            raise ConfigError(f"{csv_path.name} line {number}: unknown view {text!r}; use "
                              "L-CC, R-CC, L-MLO or R-MLO") from exc
        mapping[Path(name).as_posix()] = view
    return mapping
