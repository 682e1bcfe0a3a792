"""CSV tables of breasts: column choice, located value parsing, label tables.

Every error names the file and the line (line 1 is the header). Missing columns are usage errors
(ConfigError, exit 2); bad values are input errors (InputError, exit 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

# the one CSV reader, re-exported: the analysis modules read their tables through here
from ..io.csv_tables import CsvTable as CsvTable
from ..io.csv_tables import Row as Row
from ..io.csv_tables import read_csv as read_csv

BreastKey = tuple[str, str]  # (exam id, "L" | "R")
SIDES = ("L", "R")
_SIDE_NAMES = {"l": "L", "left": "L", "r": "R", "right": "R"}


@dataclass(frozen=True)
class Columns:
    """Column names for any CSV input; defaults are the long layout."""

    exam: str = "exam_id"
    side: str = "side"
    label: str = "label"
    reader: str = "reader"
    score: str = "score"
    model: str | None = None  # None: `score`, then `malignant`
    readers: tuple[str, ...] = ()  # names or globs (wide layout), e.g. ("Reader*_POM",)
    exam_explicit: bool = False  # the user named --exam-column (no `index` fallback then)


def parse_side(table: CsvTable, row: Row, column: str) -> str:
    value = row.values.get(column, "")
    side = _SIDE_NAMES.get(value.lower())
    if side is None:
        raise InputError(f"{table.where(row.line)}: side {value!r} is not L/R/left/right")
    return side


def _as_float(value: str) -> float:
    """The number in a cell, NaN when it is not one (callers say what was expected)."""
    try:
        return float(value)
    except ValueError:
        return math.nan


def parse_float(table: CsvTable, row: Row, column: str) -> float:
    value = row.values.get(column, "")
    x = _as_float(value)
    if not math.isfinite(x):
        raise InputError(f"{table.where(row.line)}: {column} = {value!r} is not a number")
    return x


def parse_label(table: CsvTable, row: Row, column: str) -> int:
    value = row.values.get(column, "")
    x = _as_float(value)
    if x not in (0.0, 1.0):
        raise InputError(f"{table.where(row.line)}: label {column} = {value!r} is not 0 or 1")
    return int(x)


def check_probabilities(table: CsvTable, column: str, values: list[tuple[int, float]],
                        allow_percent: bool, warnings: list[str]) -> list[float]:
    """Range-check one column of probabilities; a 0-100 column is divided by 100 and said so.

    (line, value) pairs in; a column is read as 0-100 when any value exceeds 1 and none exceeds
    100. A column that only ever uses 0 and 1 on a 0-100 scale cannot be told apart.
    """
    top = 100.0 if allow_percent else 1.0
    for line, v in values:
        if v < 0.0 or v > top:
            raise InputError(
                f"{table.where(line)}: {column} = {v:g} is outside 0-{top:g}",
                hint="scores are probabilities of malignancy (0-1"
                + (", or 0-100)" if allow_percent else ")"),
            )
    if allow_percent and any(v > 1.0 for _, v in values):
        warnings.append(f"{table.path.name}: {column} read as 0-100 and divided by 100")
        return [v / 100.0 for _, v in values]
    return [v for _, v in values]


def check_both_sides(keys: list[BreastKey], source: str) -> None:
    """Every exam must have a left and a right breast (metrics resample whole exams)."""
    sides: dict[str, set[str]] = {}
    for exam, side in keys:
        sides.setdefault(exam, set()).add(side)
    for exam, present in sides.items():
        if present != set(SIDES):
            raise InputError(
                f"{source}: exam {exam!r} has the {'/'.join(sorted(present))} side only",
                hint="give one row per breast, left and right, for every exam",
            )


@dataclass(frozen=True)
class Labels:
    """Per-breast labels (1 = malignant), optional benign labels, other columns for subgroups."""

    malignant: dict[BreastKey, int]
    benign: dict[BreastKey, int] | None = None
    attributes: dict[BreastKey, dict[str, str]] = field(default_factory=dict)


def read_labels(path: Path, columns: Columns) -> Labels:
    """Long layout (exam, side, label [, benign_label]) or per exam (left_malignant,
    right_malignant [, left_benign, right_benign]); other columns are kept for `--by`."""
    table = read_csv(path)
    wide = {"left_malignant", "right_malignant"} <= set(table.header)
    exam_col = exam_column(table, columns)
    malignant: dict[BreastKey, int] = {}
    benign: dict[BreastKey, int] = {}
    attributes: dict[BreastKey, dict[str, str]] = {}
    seen: dict[object, int] = {}
    if wide:
        has_benign = {"left_benign", "right_benign"} <= set(table.header)
        for row in table.rows:
            exam = exam_id(table, row, exam_col)
            for side, name in (("L", "left"), ("R", "right")):
                key = (exam, side)
                no_duplicate(table, row, key, seen)
                malignant[key] = parse_label(table, row, f"{name}_malignant")
                if has_benign:
                    benign[key] = parse_label(table, row, f"{name}_benign")
                attributes[key] = row.values
    else:
        table.require(exam_col, columns.side, columns.label,
                      option="--exam-column/--side-column/--label-column")
        has_benign = "benign_label" in table.header
        for row in table.rows:
            key = (exam_id(table, row, exam_col), parse_side(table, row, columns.side))
            no_duplicate(table, row, key, seen)
            malignant[key] = parse_label(table, row, columns.label)
            if has_benign:
                benign[key] = parse_label(table, row, "benign_label")
            attributes[key] = row.values
    check_both_sides(list(malignant), path.name)
    return Labels(malignant, benign or None, attributes)


def exam_column(table: CsvTable, columns: Columns) -> str:
    # The metarepository's breast-level files call the exam column `index`.
    if (not columns.exam_explicit and columns.exam not in table.header
            and "index" in table.header):
        return "index"
    table.require(columns.exam, option="--exam-column")
    return columns.exam


def exam_id(table: CsvTable, row: Row, column: str) -> str:
    exam = row.values.get(column, "")
    if not exam:
        raise InputError(f"{table.where(row.line)}: empty exam id in column {column}")
    return exam


def no_duplicate(table: CsvTable, row: Row, key: object, seen: dict[object, int]) -> None:
    if key in seen:
        raise InputError(f"{table.where(row.line)}: duplicate of line {seen[key]} "
                         f"({_describe(key)})", hint="give each breast (and reader) one row")
    seen[key] = row.line



def _describe(key: object) -> str:
    """exam / (exam, side) / ((exam, side), reader) as words for an error message."""
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], tuple):
        return f"{_describe(key[0])}, reader {key[1]!r}"
    if isinstance(key, tuple) and len(key) == 2:
        return f"exam {key[0]!r}, side {key[1]}"
    return f"exam {key!r}"
