"""CSV manifests of training data, checked row by row before any training starts.

Breast task: `exam` (an exam folder, PNG or DICOM, read by the same discovery as `predict`), the
four labels `left_benign,right_benign,left_malignant,right_malignant` (0/1), optional `patient`
(validation is split by patient) and `split` (train/val).

Patch task: `image` (16-bit PNG), `benign_mask` and `malignant_mask` (PNG, non-zero = lesion;
either may be empty), optional `patient` and `split`.

Paths are relative to the manifest's folder unless absolute.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..errors import ConfigError, InputError
from ..io.csv_tables import read_csv
from ..io.discover import discover_exams
from ..io.exam import ExamSource
from ..views import LABELS

BREAST_COLUMNS = ("exam", *LABELS)
PATCH_COLUMNS = ("image", "benign_mask", "malignant_mask")


@dataclass(frozen=True)
class BreastRow:
    row: int  # 1-based data row (the header is row 0), for messages
    exam: ExamSource
    labels: tuple[int, int, int, int]  # LABELS order
    patient: str
    split: str | None


@dataclass(frozen=True)
class PatchRow:
    row: int
    image: Path
    benign_mask: Path | None
    malignant_mask: Path | None
    patient: str
    split: str | None


T = TypeVar("T", "BreastRow", "PatchRow")


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise ConfigError(f"{path}: manifest not found",
                          hint="point data.train at your manifest (CSV), or write the demo "
                               "data and configs with `mammocli examples make DIR` and train "
                               "with DIR/train_patch.yaml (or train_breast, train_gmic)")
    table = read_csv(path)
    missing = [c for c in required if c not in table.header]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}; "
                          f"expected {', '.join(required)} (+ optional patient, split)")
    if not table.rows:
        raise ConfigError(f"{path}: the manifest has no rows")
    return [row.values for row in table.rows]


def _split(value: str, where: str) -> str | None:
    if value in ("", None):
        return None
    if value not in ("train", "val"):
        raise ConfigError(f"{where}: split must be train or val, not {value!r}")
    return value


def _file(base: Path, value: str, where: str, column: str, optional: bool = False,
          ) -> Path | None:
    if not value:
        if optional:
            return None
        raise InputError(f"{where}: column {column} is empty")
    path = Path(value) if Path(value).is_absolute() else base / value
    if not path.exists():
        raise InputError(f"{where}: {column} {value} not found")
    return path


def _rows_with_file(path: Path, columns: tuple[str, ...], column: str,
                    ) -> Iterator[tuple[int, str, dict[str, str], Path]]:
    """(row number, where, values, the existing file or folder in `column`) per manifest row."""
    for i, raw in enumerate(_read_rows(path, columns), start=1):
        where = f"{path.name} row {i}"
        found = _file(path.parent, raw[column], where, column)
        assert found is not None  # not optional: _file raised otherwise
        yield i, where, raw, found


def read_breast_manifest(path: Path) -> list[BreastRow]:
    """Every row checked: the exam folder exists and holds all four views; labels are 0/1."""
    path = Path(path)
    out = []
    for i, where, raw, folder in _rows_with_file(path, BREAST_COLUMNS, "exam"):
        try:
            exams = discover_exams(folder)
        except (ConfigError, InputError) as exc:
            raise InputError(f"{where} ({raw['exam']}): {exc.message}", exc.hint) from exc
        if len(exams) != 1:
            raise InputError(f"{where}: {raw['exam']} holds {len(exams)} exams; list one per row")
        if exams[0].problem is not None:
            raise InputError(f"{where} ({raw['exam']}): {exams[0].problem.message}",
                             exams[0].problem.hint)
        missing = exams[0].missing_views
        if missing:
            raise InputError(
                f"{where} ({raw['exam']}): missing view(s) {', '.join(v.value for v in missing)}",
                hint="each exam needs L-CC, R-CC, L-MLO and R-MLO",
            )
        labels = []
        for label in LABELS:
            if raw[label] not in ("0", "1"):
                raise InputError(f"{where}: {label} must be 0 or 1, not {raw[label]!r}")
            labels.append(int(raw[label]))
        out.append(BreastRow(i, exams[0], tuple(labels),  # type: ignore[arg-type]
                             raw.get("patient") or raw["exam"], _split(raw.get("split", ""),
                                                                        where)))
    return out


def read_patch_manifest(path: Path) -> list[PatchRow]:
    path = Path(path)
    out = []
    for i, where, raw, image in _rows_with_file(path, PATCH_COLUMNS, "image"):
        out.append(PatchRow(
            i, image,
            _file(path.parent, raw["benign_mask"], where, "benign_mask", optional=True),
            _file(path.parent, raw["malignant_mask"], where, "malignant_mask", optional=True),
            raw.get("patient") or raw["image"], _split(raw.get("split", ""), where),
        ))
    return out


def split_rows(rows: list[T], val_rows: list[T] | None, fraction: float, seed: int,
               ) -> tuple[list[T], list[T]]:
    """Train and validation rows: a separate manifest, else the `split` column, else a seeded
    hold-out of whole patients (no patient on both sides)."""
    if val_rows is not None:
        return rows, val_rows
    if any(r.split is not None for r in rows):
        return [r for r in rows if r.split != "val"], [r for r in rows if r.split == "val"]
    patients = sorted({r.patient for r in rows})
    if len(patients) < 2:
        raise ConfigError("a validation split needs at least two patients; "
                          "add data.val or a split column")
    order = np.random.RandomState(seed).permutation(len(patients))
    n_val = max(1, round(len(patients) * fraction))
    held = {patients[i] for i in order[:n_val]}
    return [r for r in rows if r.patient not in held], [r for r in rows if r.patient in held]
