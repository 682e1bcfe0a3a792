"""Exam discovery: an exam folder, or a root holding many exam folders or DICOM studies.

PNG exam folders are read by `png_exam`, DICOM trees by `dicom_discover`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError, InputError
from ..views import View
from .dicom_discover import discover_dicom_exams
from .dicom_options import DicomOptions
from .exam import ExamSource
from .png_exam import EXAM_FILE, looks_like_png_exam, read_exam_folder, view_from_name

__all__ = ["discover_exams", "read_exam_folder", "read_views_csv", "view_from_name"]


def discover_exams(path: Path, *, options: DicomOptions | None = None,
                   views: Mapping[str, View] | None = None) -> list[ExamSource]:
    """Exams under `path` in sorted order.

    `path` is one PNG exam folder, a root of PNG exam folders, or any tree of DICOM files (one
    exam per study). `views` maps DICOM files (paths relative to `path`, '/'-separated) to views,
    overriding their headers (see `read_views_csv`).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise ConfigError(f"{path}: expected a folder holding an exam (or many exam folders)")
    if looks_like_png_exam(path):
        return [read_exam_folder(path)]
    png_folders = [d for d in sorted(p for p in path.iterdir() if p.is_dir())
                   if looks_like_png_exam(d)]
    exams = [read_exam_folder(d) for d in png_folders]
    dicom_exams, problems = discover_dicom_exams(path, options=options, views=views,
                                                 exclude=png_folders)
    exams.extend(dicom_exams)
    if not exams:
        detail = "".join(f"\n  {p.relative}: {p.reason}" for p in problems[:10])
        raise InputError(
            f"{path.name}: no exam found (no {EXAM_FILE}, no image named after a view and no "
            f"usable DICOM study){detail}",
            hint="name files like L_CC.png, R-MLO.png, list them per view in exam.yaml, or "
                 "point to a folder of DICOM mammograms",
        )
    return sorted(exams, key=lambda e: (str(e.folder), e.exam_id))



def read_views_csv(csv_path: Path) -> dict[str, View]:
    """A `--views-csv` file: rows `file,view` (a header row is optional); view L-CC, R-MLO ...

    File paths are relative to the folder given to `discover_exams`.
    """
    csv_path = Path(csv_path)
    try:
        rows = list(csv.reader(csv_path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{csv_path}: cannot read the views CSV ({exc})") from exc
    mapping: dict[str, View] = {}
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
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
