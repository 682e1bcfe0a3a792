"""The one way discovery lists a folder: the same rules for PNG exams, roots and DICOM trees.

- Hidden entries (names starting with ".") are left out.
- Symbolic links are followed only while their target stays inside the tree being read (the
  exam folder, or the root); a link out of the tree, a dangling link and a link loop are left
  out with a reason.
- Only regular files are files: a FIFO, socket or device would hang or flood a reader.
- A folder reached twice (a link to a folder already read) is read once.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

EntryKind = Literal["file", "folder", "skipped"]


@dataclass(frozen=True)
class Entry:
    """One name in a folder: a regular file, a folder, or something left out (with why)."""

    path: Path  # as found (under the tree, links not resolved)
    kind: EntryKind
    reason: str = ""  # why a "skipped" entry is left out

    @property
    def hidden(self) -> bool:
        return self.path.name.startswith(".")


def _inside(target: str, tree: str) -> bool:
    return target == tree or target.startswith(tree.rstrip(os.sep) + os.sep)


def classify(path: Path, tree: Path) -> Entry:
    """What `path` (an entry under `tree`) is, following links only inside `tree`."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return Entry(path, "skipped", f"cannot be read ({exc.strerror})")
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return Entry(path, "skipped", "symbolic link loop")
            if exc.errno == errno.ENOENT:
                return Entry(path, "skipped", "dangling symbolic link (its target does not "
                                              "exist)")
            return Entry(path, "skipped", f"symbolic link that cannot be followed "
                                          f"({exc.strerror})")
        if not _inside(os.path.realpath(path), os.path.realpath(tree)):
            return Entry(path, "skipped", f"symbolic link to outside {tree.name or 'the folder'}"
                                          ": not followed")
    if stat.S_ISDIR(st.st_mode):
        return Entry(path, "folder")
    if stat.S_ISREG(st.st_mode):
        return Entry(path, "file")
    return Entry(path, "skipped", "not a regular file (FIFO, socket or device)")


def list_folder(folder: Path, tree: Path | None = None) -> list[Entry]:
    """The entries of `folder`, sorted by name, hidden ones included (callers decide)."""
    tree = folder if tree is None else tree
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, folder.name) from None
    return [classify(folder / name, tree) for name in names]


@dataclass(frozen=True)
class Walk:
    files: list[Path]  # regular files, sorted per folder, depth first
    skipped: list[Entry]  # entries left out with a reason (hidden ones are not listed)


def walk_files(root: Path, exclude: list[Path] | None = None) -> Walk:
    """Every regular file under `root` by the rules above; folders in `exclude` are skipped."""
    root = Path(root)
    excluded = {os.path.realpath(e) for e in exclude or []}
    seen: set[str] = set()
    files: list[Path] = []
    skipped: list[Entry] = []

    def visit(folder: Path) -> None:
        real = os.path.realpath(folder)
        if real in excluded:
            return
        if real in seen:
            if folder.is_symlink():
                skipped.append(Entry(folder, "skipped", "link to a folder already read "
                                                        "(a loop or a duplicate): not followed"))
            return
        seen.add(real)
        try:
            entries = list_folder(folder, root)
        except OSError as exc:
            skipped.append(Entry(folder, "skipped", f"folder cannot be read ({exc.strerror})"))
            return
        for entry in entries:
            if entry.hidden:
                continue
            if entry.kind == "file":
                files.append(entry.path)
            elif entry.kind == "folder":
                visit(entry.path)
            else:
                skipped.append(entry)

    visit(root)
    return Walk(files, skipped)
