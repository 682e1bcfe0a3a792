"""PNG exam folders: views named in file names, or listed per view in `exam.yaml`.

Several images per view are allowed: the test-time augmentation draws among them, as the
authors' code does. Reading a folder never raises for a bad exam: what is wrong is recorded on
the ExamSource (`problem`, `skipped`) so that the exam fails alone.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from ..config import FlipMode
from ..views import VIEWS, Angle, Side, View
from .exam import ExamProblem, ExamSource, ImageSource, SkippedFile
from .walk import Entry, classify, list_folder

EXAM_FILE = "exam.yaml"
IMAGE_SUFFIXES = {".png"}
JPEG_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif"}
# Files of these kinds named after a view make a folder an exam (which then says why they
# cannot be used) instead of vanishing from a root.
_OTHER_IMAGE_SUFFIXES = JPEG_SUFFIXES | {".tif", ".tiff", ".bmp", ".gif", ".webp"}
MAX_EXAM_FILE_BYTES = 1 << 20  # an exam.yaml is a few lines; anything larger is not one
_VIEW_IN_NAME = re.compile(r"(?<![a-z])([lr])[-_ ]?(cc|mlo)(?![a-z])")
_YAML_HINT = ("exam.yaml maps views to files: 'views: {L-CC: [a.png], R-CC: b.png, ...}' and "
              "optional 'horizontal_flip: NO|YES|auto'")


def views_in_name(name: str) -> set[View]:
    """Every view named in a file name (case-insensitive), ignoring the last suffix."""
    return {
        View.of(Side.LEFT if m.group(1) == "l" else Side.RIGHT, Angle(m.group(2).upper()))
        for m in _VIEW_IN_NAME.finditer(Path(name).stem.lower())
    }


def view_from_name(name: str) -> View | None:
    """The view named in a file name, case-insensitive; None when absent or ambiguous."""
    found = views_in_name(name)
    return found.pop() if len(found) == 1 else None


def _names_view(entry: Entry) -> bool:
    suffix = entry.path.suffix.lower()
    return (entry.kind == "file" and not entry.hidden
            and suffix in IMAGE_SUFFIXES | _OTHER_IMAGE_SUFFIXES
            and bool(views_in_name(entry.path.name)))


def looks_like_png_exam(folder: Path) -> bool:
    """A folder with an exam.yaml (even a broken one) or an image file named after a view."""
    try:
        entries = list_folder(folder)
    except OSError:
        return False
    return any(e.path.name == EXAM_FILE or _names_view(e) for e in entries)


def _is_png(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


def _why_not_used(entry: Entry) -> str | None:
    """Why a folder entry is not an image of the exam; None when it is one (or is silent)."""
    name = entry.path.name
    views = views_in_name(name)
    if entry.hidden:
        # Hidden files are never used; say so only where one looks like a view image.
        return "hidden file: ignored" if views and entry.kind == "file" else None
    if entry.kind == "skipped":
        return entry.reason
    if entry.kind == "folder":
        return None
    suffix = entry.path.suffix.lower()
    if suffix in JPEG_SUFFIXES:
        if _is_png(entry.path):
            return "a PNG file with a JPEG name: rename it to .png"
        return "JPEG is not supported (lossy): use the 16-bit PNG or DICOM original"
    if suffix not in IMAGE_SUFFIXES:
        if views:
            return f"not a .png file (the name ends in {entry.path.suffix or 'no suffix'})"
        return "not a PNG image"
    if len(views) > 1:
        return "the name holds more than one view (" + ", ".join(
            v.value for v in VIEWS if v in views) + ")"
    if not views:
        return "no view (L/R + CC/MLO) in the file name"
    return None


def read_exam_folder(folder: Path) -> ExamSource:
    """The exam in one folder. Never raises for a bad exam: see ExamSource.problem."""
    folder = Path(folder)
    try:
        entries = list_folder(folder)
    except OSError as exc:
        return _failed(folder, f"cannot list the folder ({exc.strerror})")
    if any(e.path.name == EXAM_FILE for e in entries):
        return _read_exam_yaml(folder)
    images: dict[View, list[ImageSource]] = {v: [] for v in VIEWS}
    skipped: list[SkippedFile] = []
    for entry in entries:
        reason = _why_not_used(entry)
        if reason is not None:
            skipped.append(SkippedFile(entry.path.name, reason))
            continue
        if entry.kind != "file" or entry.hidden:
            continue
        view = view_from_name(entry.path.name)
        assert view is not None
        images[view].append(ImageSource(path=entry.path, relative=entry.path.name, view=view))
    return ExamSource(
        exam_id=folder.name,
        folder=folder,
        images={v: tuple(s) for v, s in images.items()},
        skipped=tuple(skipped),
    )


def _failed(folder: Path, message: str, hint: str | None = None) -> ExamSource:
    return ExamSource(exam_id=folder.name, folder=folder, images={v: () for v in VIEWS},
                      problem=ExamProblem(message, hint))


# --- exam.yaml ---------------------------------------------------------------------------

def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _file_list(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        what = _kind(value) if not isinstance(value, list) else "a list holding " + ", ".join(
            sorted({_kind(v) for v in value if not isinstance(v, str)}))
        raise ValueError(f"expected a file name or a list of file names, got {what}")
    for name in value:
        if not name or "\x00" in name:
            raise ValueError("a file name is empty or holds a NUL byte")
    return tuple(value)


def _flip(value: object) -> FlipMode | None:
    if value is None:
        return None
    # YAML 1.1 reads a bare NO/YES as a boolean.
    text = {True: "yes", False: "no"}.get(value) if isinstance(value, bool) else value
    if isinstance(text, str):
        try:
            return FlipMode(text.lower())
        except ValueError:
            pass
    got = repr(value) if isinstance(value, str) else _kind(value)
    raise ValueError(f"expected NO, YES or auto, got {got}")


def _view_key(value: object) -> View:
    if isinstance(value, str):
        try:
            return View(value.upper().replace("_", "-"))
        except ValueError:
            pass
    raise ValueError("unknown view; use L-CC, R-CC, L-MLO, R-MLO")


FileList = Annotated[tuple[str, ...], BeforeValidator(_file_list)]


class ExamFile(BaseModel):
    """exam.yaml: files per view (paths relative to the exam folder) and the orientation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    views: dict[Annotated[View, BeforeValidator(_view_key)], FileList] = {}
    horizontal_flip: Annotated[FlipMode | None, BeforeValidator(_flip)] = None


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc` (the deepest one that exists)."""
    line = None if node is None else node.start_mark.line + 1
    for key in loc:
        if not isinstance(node, yaml.MappingNode):
            return line
        match = [(k, v) for k, v in node.value if str(k.value) == str(key)]
        if not match:
            return line
        key_node, node = match[0]
        line = key_node.start_mark.line + 1
    return line


def _validation_lines(exc: ValidationError, tree: yaml.Node | None) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("[key]",))
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(tree, loc)
        message = ("unknown key; allowed: views, horizontal_flip"
                   if err["type"] == "extra_forbidden" else
                   str(err["msg"]).removeprefix("Value error, "))
        lines.append(f"{f'line {line}, ' if line else ''}{key}: {message}")
    return lines


def _read_exam_text(path: Path) -> str:
    """The text of exam.yaml; raises ValueError with the reason when it cannot be used."""
    entry = classify(path, path.parent)
    if entry.kind != "file":
        raise ValueError(entry.reason or "not a regular file")
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > MAX_EXAM_FILE_BYTES:
            raise ValueError(f"{st.st_size:,} bytes; an exam.yaml is at most "
                             f"{MAX_EXAM_FILE_BYTES:,}")
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError("not UTF-8 text") from exc


def _read_exam_yaml(folder: Path) -> ExamSource:
    where = EXAM_FILE  # relative to the exam folder, as every message
    try:
        text = _read_exam_text(folder / EXAM_FILE)
    except ValueError as exc:
        return _failed(folder, f"{where}: {exc}",
                       hint="make exam.yaml a readable text file inside the exam folder")
    try:
        doc: Any = yaml.safe_load(text)
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        return _failed(folder, f"{where}: not valid YAML ({exc})", hint=_YAML_HINT)
    except RecursionError:
        return _failed(folder, f"{where}: nested too deeply to be an exam file", hint=_YAML_HINT)
    if not isinstance(doc, dict):
        return _failed(folder, f"{where}: expected a mapping with 'views' and optional "
                               "'horizontal_flip'", hint=_YAML_HINT)
    try:
        spec = ExamFile.model_validate(doc)
    except ValidationError as exc:
        return _failed(folder, f"{where}: invalid:\n  " + "\n  ".join(
            _validation_lines(exc, tree)), hint=_YAML_HINT)
    except RecursionError:
        return _failed(folder, f"{where}: nested too deeply to be an exam file", hint=_YAML_HINT)

    images: dict[View, tuple[ImageSource, ...]] = {}
    problems: list[str] = []
    for view, names in spec.views.items():
        sources = []
        for rel in names:
            why = _listed_file_problem(folder, rel)
            if why:
                problems.append(f"{view.value}: {rel}: {why}")
                continue
            full = folder / rel
            kind = "png" if full.suffix.lower() in IMAGE_SUFFIXES else "dicom"
            sources.append(ImageSource(path=full, relative=rel, view=view, kind=kind))
        images[view] = tuple(sources)
    for v in VIEWS:
        images.setdefault(v, ())
    problem = None
    if problems:
        problem = ExamProblem(f"{where}: listed file(s) cannot be used:\n  " +
                              "\n  ".join(problems),
                              hint="list regular image files inside the exam folder")
    return ExamSource(exam_id=folder.name, folder=folder, images=images,
                      horizontal_flip=spec.horizontal_flip, problem=problem)


def _listed_file_problem(folder: Path, rel: str) -> str | None:
    """Why a file listed in exam.yaml cannot be read; None when it can."""
    base = os.path.realpath(folder)
    if os.path.isabs(rel) or not _under(os.path.normpath(os.path.join(base, rel)), base):
        return "points outside the exam folder"
    # Any component may be a link: the target must stay inside the exam folder.
    if not _under(os.path.realpath(os.path.join(base, rel)), base):
        return "a symbolic link to outside the exam folder: not followed"
    path = folder / rel
    entry = classify(path, folder)
    if entry.kind == "file":
        return None
    if entry.kind == "folder":
        return "a folder, not a file"
    return "no such file" if not os.path.lexists(path) else entry.reason


def _under(target: str, base: str) -> bool:
    return target.startswith(base.rstrip(os.sep) + os.sep)
