"""The one exception hierarchy. Each class carries the CLI exit code and a hint for the user.

Library code raises these; only the CLI turns them into messages and exit codes. Messages never
contain patient identifiers: paths are given relative to the exam folder.
"""

from __future__ import annotations


class MammocliError(Exception):
    """Base class of every expected error."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(MammocliError, ValueError):
    """Bad command-line options or configuration files (exit 2)."""

    exit_code = 2


class InputError(MammocliError, ValueError):
    """An exam or input file that cannot be used (exit 3)."""

    exit_code = 3


class MissingViewError(InputError, FileNotFoundError):
    """A required view has no image."""


class WeightsError(MammocliError, OSError):
    """Weights missing, corrupt, of the wrong format or failing verification (exit 4)."""

    exit_code = 4


class DownloadError(WeightsError, ConnectionError):
    """A download failed after its retries."""


class OutputError(MammocliError, OSError):
    """An output target that cannot be written: exists, wrong kind, not writable, disk full
    (exit 2)."""

    exit_code = 2


class DeviceError(MammocliError, RuntimeError):
    """A requested compute device is not available (exit 5)."""

    exit_code = 5


EXIT_INTERRUPTED = 130
