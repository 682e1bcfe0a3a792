"""Writing command outputs: stdout, or a file written atomically (never replacing one without
--overwrite; the target is checked before the command computes anything)."""

from __future__ import annotations

from pathlib import Path

from ..outputs.files import atomic_write_bytes, check_file_target, check_folder_target, write_failed
from .common import write_stdout


def check_output(output: Path | None, overwrite: bool, option: str = "-o") -> None:
    """Fail before the work when `output` could not be written (exit 2, with the fix)."""
    if output is not None:
        check_file_target(output, option, overwrite=overwrite)


def check_output_folder(folder: Path | None, names: list[str], overwrite: bool,
                        option: str) -> None:
    """A folder the command writes `names` into: none of them replaced without --overwrite."""
    if folder is None:
        return
    check_folder_target(folder, option)
    for name in names:
        check_file_target(folder / name, option, overwrite=overwrite)


def write_file(path: Path, data: bytes | str) -> None:
    """Atomically, with an OutputError naming the file when it cannot be written."""
    try:
        atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as exc:
        raise write_failed(path, exc) from None


def emit(text: str, output: Path | None) -> None:
    """The result to stdout, or to `output` when given."""
    if output is None:
        write_stdout(text)
    else:
        write_file(output, text if text.endswith("\n") else text + "\n")
