"""The one atomic writer of the package, and the checks every output target passes before a run.

A reader never sees a half-written file and a crash never leaves one: data goes to a temporary
file in the target's folder, is fsynced, then renamed over the target (or linked to it, for an
exclusive create). The file gets the mode the umask gives (as `open` would), not mkstemp's 0600.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import OutputError


def umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: Path, *, exclusive: bool = False) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces `path` atomically when the block ends.

    exclusive: never replace an existing file; FileExistsError if `path` appeared meanwhile
    (another run wrote it first). The temporary file is removed on any failure.
    """
    path = Path(path)
    if not path.parent.is_dir():  # usually there: one stat, not a failing mkdir per file
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        if exclusive:
            _link_exclusive(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _link_exclusive(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)  # EEXIST: never replaces what another run wrote
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise
        # No hard links here (e.g. FAT, some network shares): claim the name, then rename.
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    with atomic_file(path, exclusive=exclusive) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str, *, exclusive: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), exclusive=exclusive)


def describe_os_error(exc: OSError) -> str:
    """A short reason for an OSError, without the path (messages name the path themselves)."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return exc.strerror or type(exc).__name__


def write_failed(path: Path | str, exc: OSError, done: str = "") -> OutputError:
    """The error for an output that could not be written during a run."""
    return OutputError(f"cannot write {path}: {describe_os_error(exc)}{done}",
                       hint="free space or choose a writable location; finished results were "
                            "kept (run again with --resume where the output supports it)")


# --- checks before the first exam -----------------------------------------------------------

def _first_existing_parent(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _check_parent(path: Path, option: str) -> None:
    parent = _first_existing_parent(path)
    if not parent.is_dir():
        raise OutputError(f"{option} {path}: {parent} is a file, not a folder",
                          hint=f"choose a path for {option} under a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: cannot create files in {parent} (not writable)",
                          hint=f"choose a writable location for {option}")


def check_file_target(path: Path, option: str, *, overwrite: bool, append: bool = False) -> None:
    """A file output: not a folder, under a writable folder, never replaced without --overwrite
    (`append`: an existing file will be extended, e.g. by --resume)."""
    path = Path(path)
    _check_parent(path, option)
    if path.is_dir():
        raise OutputError(f"{option} {path}: is a folder; {option} writes a file",
                          hint=f"give a file name for {option}")
    if path.exists():
        if not path.is_file():  # a device (/dev/full), FIFO or socket: never renamed over
            raise OutputError(f"{option} {path}: not a regular file",
                              hint=f"give a file name for {option}")
        if not (overwrite or append):
            raise OutputError(f"{option} {path} exists",
                              hint="use --overwrite to replace it, or choose another name")
        if not os.access(path, os.W_OK) and not os.access(path.parent, os.W_OK):
            raise OutputError(f"{option} {path}: not writable",
                              hint=f"choose a writable location for {option}")


def check_folder_target(path: Path, option: str) -> None:
    """A folder output: a folder or nothing yet, under a writable folder."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise OutputError(f"{option} {path}: exists and is not a folder",
                              hint=f"give a folder for {option} (or remove the file)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{option} {path}: folder not writable",
                              hint=f"choose a writable folder for {option}")
        return
    _check_parent(path, option)


def check_distinct(targets: Mapping[str, Path | None]) -> None:
    """Two options must never write the same file."""
    seen: dict[Path, str] = {}
    for option, path in targets.items():
        if path is None:
            continue
        key = Path(os.path.abspath(path))
        if key in seen:
            raise OutputError(f"{seen[key]} and {option} both name {path}",
                              hint="give each output its own file")
        seen[key] = option
