"""Exam discovery: an exam folder, or a root holding many exam folders or DICOM studies.

PNG: an exam folder holds images whose file names name the view (`0_L_CC.png`, `L-CC.png`,
`lmlo.png` ...), or an `exam.yaml` listing files per view. Several images per view are allowed:
the test-time augmentation draws among them, as the authors' code does.

DICOM: any files under the path (nested, any names; detected by content), one exam per
StudyInstanceUID; the view of each file comes from its header (see dicom_tags, dicom_select).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import yaml

from ..config import FlipMode
from ..errors import ConfigError, InputError
from ..views import VIEWS, Angle, Side, View
from .dicom_options import DicomOptions
from .dicom_scan import DicomHeader, is_dicom_file, scan_header
from .dicom_select import select_images
from .exam import ExamSource, ImageSource, SkippedFile

EXAM_FILE = "exam.yaml"
IMAGE_SUFFIXES = {".png"}
_VIEW_IN_NAME = re.compile(r"(?<![a-z])([lr])[-_ ]?(cc|mlo)(?![a-z])")


def view_from_name(name: str) -> View | None:
    """The view named in a file name, case-insensitive; None when absent or ambiguous."""
    found = {
        View.of(Side.LEFT if m.group(1) == "l" else Side.RIGHT, Angle(m.group(2).upper()))
        for m in _VIEW_IN_NAME.finditer(Path(name).stem.lower())
    }
    return found.pop() if len(found) == 1 else None


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
    if _looks_like_exam(path):
        return [read_exam_folder(path)]
    png_folders = [d for d in sorted(p for p in path.iterdir() if p.is_dir())
                   if _looks_like_exam(d)]
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


def _looks_like_exam(folder: Path) -> bool:
    if (folder / EXAM_FILE).is_file():
        return True
    return any(
        f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and view_from_name(f.name)
        for f in folder.iterdir()
    )


def read_exam_folder(folder: Path) -> ExamSource:
    if (folder / EXAM_FILE).is_file():
        return _read_exam_yaml(folder)
    images: dict[View, list[ImageSource]] = {v: [] for v in VIEWS}
    skipped: list[SkippedFile] = []
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            if not f.name.startswith("."):
                skipped.append(SkippedFile(f.name, "not a PNG image"))
            continue
        view = view_from_name(f.name)
        if view is None:
            skipped.append(SkippedFile(f.name, "no view (L/R + CC/MLO) in the file name"))
            continue
        images[view].append(ImageSource(path=f, relative=f.name, view=view))
    return ExamSource(
        exam_id=folder.name,
        folder=folder,
        images={v: tuple(s) for v, s in images.items()},
        skipped=tuple(skipped),
    )


def _read_exam_yaml(folder: Path) -> ExamSource:
    where = f"{folder.name}/{EXAM_FILE}"
    try:
        doc = yaml.safe_load((folder / EXAM_FILE).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a mapping with 'views' and optional "
                         "'horizontal_flip'")
    unknown = set(doc) - {"views", "horizontal_flip"}
    if unknown:
        raise InputError(f"{where}: unknown keys {sorted(unknown)}; "
                         "allowed: views, horizontal_flip")
    flip = doc.get("horizontal_flip")
    flip_mode: FlipMode | None = None
    if flip is not None:
        # YAML 1.1 reads a bare NO/YES as a boolean.
        text = {True: "yes", False: "no"}.get(flip, str(flip)).lower()  # type: ignore[call-overload]
        try:
            flip_mode = FlipMode(text)
        except ValueError as exc:
            raise InputError(f"{where}: horizontal_flip must be NO, YES or auto, got {flip!r}") \
                from exc
    views = doc.get("views") or {}
    if not isinstance(views, dict):
        raise InputError(f"{where}: 'views' must map L-CC/R-CC/L-MLO/R-MLO to file lists")
    images: dict[View, tuple[ImageSource, ...]] = {}
    for key, files in views.items():
        try:
            view = View(str(key).upper().replace("_", "-"))
        except ValueError as exc:
            raise InputError(f"{where}: unknown view {key!r}; use L-CC, R-CC, L-MLO, R-MLO") \
                from exc
        names = [files] if isinstance(files, str) else list(files or [])
        sources = []
        for name in names:
            rel = str(name)
            full = (folder / rel).resolve()
            if folder.resolve() not in full.parents:
                raise InputError(f"{where}: {rel} points outside the exam folder")
            kind = "png" if full.suffix.lower() in IMAGE_SUFFIXES else "dicom"
            sources.append(ImageSource(path=full, relative=rel, view=view, kind=kind))
        images[view] = tuple(sources)
    for v in VIEWS:
        images.setdefault(v, ())
    return ExamSource(exam_id=folder.name, folder=folder, images=images,
                      horizontal_flip=flip_mode)


# ---- DICOM --------------------------------------------------------------------------------------


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


def _walk_files(root: Path, exclude: list[Path]) -> list[Path]:
    """Regular files under `root`, sorted; hidden entries and excluded folders are left out.
    Symbolic links are not followed out of the tree."""
    root_resolved = root.resolve()
    excluded = {e.resolve() for e in exclude}
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs
                         if not d.startswith(".") and (here / d).resolve() not in excluded)
        for name in sorted(files):
            f = here / name
            if name.startswith(".") or not f.is_file():
                continue
            if f.is_symlink() and root_resolved not in f.resolve().parents:
                continue
            found.append(f)
    return found


def _short_id(uid: str) -> str:
    # Stable and non-identifying: the UID itself is PHI-adjacent (it can be looked up in a PACS).
    return "study-" + hashlib.sha1(uid.encode()).hexdigest()[:8]


def discover_dicom_exams(
    root: Path, *, options: DicomOptions | None = None, views: Mapping[str, View] | None = None,
    exclude: list[Path] | None = None,
) -> tuple[list[ExamSource], list[SkippedFile]]:
    """One ExamSource per StudyInstanceUID of the DICOM files under `root`.

    Returns (exams, unreadable files). Files that belong to no study (not DICOM, unreadable
    headers) are also listed as skipped in the exams whose folders hold them.
    """
    options = options or DicomOptions()
    root = Path(root)
    mapped: dict[Path, View] = {}
    for name, view in (views or {}).items():
        full = (root / name).resolve()
        if not full.is_file():
            raise ConfigError(f"views CSV: {name} is not a file under {root.name}")
        mapped[full] = view

    studies: dict[str, list[DicomHeader]] = {}
    stray: list[tuple[Path, str]] = []  # (path, reason): files no study can claim
    for f in _walk_files(root, exclude or []):
        rel = f.relative_to(root).as_posix()
        if not is_dicom_file(f):
            stray.append((f, "not a DICOM file (no 'DICM' marker after the 128-byte preamble)"))
            continue
        try:
            header, _ = scan_header(f, rel, options.max_pixels)
        except InputError as exc:
            stray.append((f, exc.message.removeprefix(f"{rel}: ")))
            continue
        if not header.study_uid:
            reason = ("DICOMDIR index (not an image)" if f.name.upper() == "DICOMDIR" else
                      header.problem or header.kind_reason if header.kind is None else
                      "no StudyInstanceUID in the header; the file may be truncated")
            stray.append((f, reason))
            continue
        studies.setdefault(header.study_uid, []).append(header)

    # Which studies have files under each folder (up to the root): decides the exam folders.
    owners: dict[Path, set[str]] = {}
    for uid, hs in studies.items():
        for h in hs:
            for folder in (h.path.parent, *h.path.parent.parents):
                owners.setdefault(folder, set()).add(uid)
                if folder == root:
                    break
    folders: dict[str, Path] = {}
    ids: dict[str, str] = {}
    for uid, hs in studies.items():
        folder = Path(os.path.commonpath([h.path.parent for h in hs]))
        if owners[folder] == {uid}:
            # The study's folder: the highest folder (up to the root) holding only this study.
            # The root itself names the exam only when it holds nothing else.
            while folder != root and owners[folder.parent] == {uid} and (
                    folder.parent != root or (len(studies) == 1 and not exclude)):
                folder = folder.parent
            folders[uid] = folder
            ids[uid] = folder.name or folder.resolve().name or "exam"
        else:
            folders[uid] = folder
            ids[uid] = uid if options.include_uids else _short_id(uid)
    names = [ids[u] for u in folders]
    for uid in folders:  # two study folders of the same name in different places
        if names.count(ids[uid]) > 1:
            ids[uid] = f"{ids[uid]}-{_short_id(uid).removeprefix('study-')}"

    exams: list[ExamSource] = []
    for uid, headers in studies.items():
        folder = folders[uid]
        local = [replace(h, relative=h.path.relative_to(folder).as_posix()) for h in headers]
        chosen = select_images(local, options, mapped)
        extra = _stray_for(folder, folders, stray)
        exams.append(ExamSource(
            exam_id=ids[uid],
            folder=folder,
            images=chosen.images,
            skipped=tuple(sorted(chosen.skipped + extra, key=lambda s: s.relative)),
            warnings=chosen.warnings,
        ))
    unreadable = [SkippedFile(p.relative_to(root).as_posix(), r) for p, r in stray]
    return sorted(exams, key=lambda e: (str(e.folder), e.exam_id)), unreadable


def _stray_for(folder: Path, folders: Mapping[str, Path],
               stray: list[tuple[Path, str]]) -> tuple[SkippedFile, ...]:
    """The stray files to report with the exam in `folder`: those whose nearest exam folder
    (deepest ancestor holding an exam) is this one; files outside every exam folder go to all."""
    result = []
    for path, reason in stray:
        holders = [f for f in folders.values() if f in path.parents]
        nearest = max(holders, key=lambda f: len(f.parts)) if holders else None
        if nearest is None or nearest == folder:
            result.append(SkippedFile(os.path.relpath(path, folder).replace(os.sep, "/"), reason))
    return tuple(result)
