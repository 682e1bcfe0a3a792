"""The one CSV reader: a BOM is dropped, and every record carries the file line it starts on
(line 1 is the first line of the file), so every message can point at the line to fix."""

from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InputError


@dataclass(frozen=True)
class Record:
    line: int  # where the record starts (a quoted cell may span lines)
    cells: list[str]


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, str]  # by stripped column name; cells stripped, missing cells ""


@dataclass(frozen=True)
class CsvTable:
    path: Path
    header: list[str]
    rows: list[Row]

    def where(self, line: int) -> str:
        return f"{self.path.name}, line {line}"

    def require(self, *names: str, option: str = "the column options") -> None:
        missing = [n for n in names if n not in self.header]
        if missing:
            raise ConfigError(
                f"{self.path.name}: missing column(s) {', '.join(missing)}",
                hint=f"columns present: {', '.join(self.header)}; choose others with {option}",
            )

    def expand(self, patterns: tuple[str, ...]) -> list[str]:
        """Column names matching names or globs, in header order."""
        found = [c for c in self.header if any(fnmatch.fnmatchcase(c, p) for p in patterns)]
        for p in patterns:
            if not any(fnmatch.fnmatchcase(c, p) for c in self.header):
                raise ConfigError(f"{self.path.name}: no column matches {p!r}",
                                  hint=f"columns present: {', '.join(self.header)}")
        return found


def read_records(path: Path) -> list[Record]:
    """Every record, blank lines included (as empty records). Raises OSError,
    UnicodeDecodeError or csv.Error: callers say which file it was and what to do."""
    with Path(path).open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        records = []
        start = 1
        for cells in reader:
            records.append(Record(start, cells))
            start = reader.line_num + 1
    return records


def read_csv(path: Path) -> CsvTable:
    """A table with a header row; blank lines are skipped. InputError when unreadable or empty."""
    try:
        records = read_records(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path.name}: not a readable CSV file ({exc})") from None
    header = [h.strip() for h in records[0].cells] if records else []
    if not header:
        raise InputError(f"{path.name}: empty file, no header row")
    rows = []
    for record in records[1:]:
        if not record.cells:
            continue
        # missing cells read as empty, cells past the header are dropped
        cells = (record.cells + [""] * len(header))[:len(header)]
        rows.append(Row(record.line, {name: cell.strip()
                                      for name, cell in zip(header, cells, strict=True) if name}))
    return CsvTable(path, header, rows)
