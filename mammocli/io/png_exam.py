"""PNG exam folders: views named in file names, or listed per view in `exam.yaml`.

Several images per view are allowed: the test-time augmentation draws among them, as the
authors' code does.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..config import FlipMode
from ..errors import InputError
from ..views import VIEWS, Angle, Side, View
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


def looks_like_png_exam(folder: Path) -> bool:
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
