"""Model predictions in any of the forms we accept, as per-breast scores.

- our result files: JSON (one PredictionResult), JSON Lines (one per line; `"status": "failed"`
  lines are reported and skipped), or a folder of them (`*.json`, `*.jsonl`, `*.ndjson`);
- the authors' 4-column CSV with an exam column (`exam_id,left_benign,right_benign,left_malignant,
  right_malignant`, what `predict --csv` writes) or the metarepository's `index,left_malignant,
  right_malignant`;
- a long CSV: exam, side and score columns (`--model-column`, default `score` then `malignant`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ..errors import ConfigError, InputError
from ..outputs.schema import HeaderValue, PredictionResult
from .tables import (
    BreastKey,
    Columns,
    CsvTable,
    check_both_sides,
    check_probabilities,
    exam_column,
    exam_id,
    no_duplicate,
    parse_float,
    parse_side,
    read_csv,
)

RESULT_SUFFIXES = {".json", ".jsonl", ".ndjson"}


@dataclass(frozen=True)
class ModelScores:
    """Per-breast probabilities of the model; benign only where every input had it."""

    malignant: dict[BreastKey, float]
    benign: dict[BreastKey, float] | None
    source: str  # what was read: a column name or "results"
    failed: list[str] = field(default_factory=list)  # "file: exam <id> failed: <error>"
    warnings: list[str] = field(default_factory=list)
    # per exam: the header fields and image statistics of its result (for --by-header)
    headers: dict[str, dict[str, HeaderValue]] = field(default_factory=dict)
    calibrated: bool = False  # malignant scores are the site file's calibrated probabilities


Score = Literal["auto", "raw", "calibrated"]


def load_predictions(path: Path, columns: Columns, score: Score = "raw") -> ModelScores:
    """`score`: which malignant probability of results to read: `raw` (the model's), or
    `calibrated` (added by `predict --site`; every result must have it), or `auto`: calibrated
    when every result has it, else raw. CSV predictions are read as they are."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in RESULT_SUFFIXES)
        if not files:
            raise InputError(f"{path}: no .json/.jsonl result files in this folder")
        return _from_results(files, path, score)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.suffix.lower() in RESULT_SUFFIXES:
        return _from_results([path], path.parent, score)
    if score == "calibrated":
        raise ConfigError(f"{path.name}: --score calibrated reads the result JSON of "
                          "`mammocli predict --site`; a CSV holds one score",
                          hint="give the results of predict --site, or --score raw")
    return _from_csv(read_csv(path), columns)


def first_error(exc: ValidationError) -> str:
    """The first problem of a validation error as `field.path: message` (for located errors)."""
    first = exc.errors()[0]
    return f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"


def _json_objects(path: Path) -> list[tuple[int, Any]]:
    """(line, object) pairs: one JSON document, a list of them, or JSON Lines."""
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
        return [(1, d) for d in doc] if isinstance(doc, list) else [(1, doc)]
    except json.JSONDecodeError:
        pass
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            objects.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path.name}, line {number}: not JSON ({exc.msg})") from None
    return objects


def _from_results(files: list[Path], base: Path, score: Score = "raw") -> ModelScores:
    malignant: dict[BreastKey, float] = {}
    calibrated: dict[BreastKey, float] = {}
    without_site: list[str] = []
    headers: dict[str, dict[str, HeaderValue]] = {}
    benign: dict[BreastKey, float] = {}
    failed: list[str] = []
    where_seen: dict[str, str] = {}
    for path in files:
        name = str(path.relative_to(base)) if path.is_relative_to(base) else path.name
        for line, obj in _json_objects(path):
            where = f"{name}, line {line}"
            if isinstance(obj, dict) and obj.get("status") == "failed":
                failed.append(f"{where}: exam {obj.get('exam_id')!r} failed: {obj.get('error')}")
                continue
            try:
                result = PredictionResult.model_validate(obj)
            except ValidationError as exc:
                raise InputError(f"{where}: not a mammocli result ({first_error(exc)})",
                                 hint="give the JSON written by `mammocli predict`") from None
            if result.exam_id in where_seen:
                raise InputError(f"{where}: exam {result.exam_id!r} also in "
                                 f"{where_seen[result.exam_id]}")
            where_seen[result.exam_id] = where
            p = result.primary
            for side, probs in (("L", p.left), ("R", p.right)):
                malignant[(result.exam_id, side)] = probs.malignant
                benign[(result.exam_id, side)] = probs.benign
            if result.site is not None:
                c = result.site.calibrated_malignant
                calibrated[(result.exam_id, "L")] = c.left
                calibrated[(result.exam_id, "R")] = c.right
            else:
                without_site.append(where)
            if result.header:
                headers[result.exam_id] = dict(result.header)
    if not malignant:
        raise InputError(f"{base}: no successful predictions in the result files")
    warnings: list[str] = []
    if score == "calibrated" and without_site:
        raise InputError(f"{without_site[0]}: no calibrated probabilities (and "
                         f"{len(without_site) - 1} other result(s))",
                         hint="run `mammocli predict --site site.json`, or use --score raw")
    use_calibrated = score != "raw" and not without_site
    if score == "auto" and calibrated and without_site:
        warnings.append(f"{len(without_site)} of {len(where_seen)} results have no calibrated "
                        "probabilities (predict --site): the raw ones are evaluated")
    if use_calibrated:
        return ModelScores(calibrated, benign, "results (calibrated by the site file)", failed,
                           warnings, headers, calibrated=True)
    return ModelScores(malignant, benign, "results", failed, warnings, headers)


def _from_csv(table: CsvTable, columns: Columns) -> ModelScores:
    warnings: list[str] = []
    seen: dict[object, int] = {}
    if {"left_malignant", "right_malignant"} <= set(table.header):
        exam_col = exam_column(table, columns)
        has_benign = {"left_benign", "right_benign"} <= set(table.header)
        values: dict[str, list[tuple[int, float]]] = {}
        keys: list[BreastKey] = []
        for row in table.rows:
            exam = exam_id(table, row, exam_col)
            no_duplicate(table, row, exam, seen)
            keys += [(exam, "L"), (exam, "R")]
            for label in ("malignant", "benign") if has_benign else ("malignant",):
                for side in ("left", "right"):
                    col = f"{side}_{label}"
                    values.setdefault(col, []).append((row.line, parse_float(table, row, col)))
        checked = {c: check_probabilities(table, c, v, False, warnings) for c, v in values.items()}
        exams = [k[0] for k in keys[::2]]
        malignant = {(e, s): checked[f"{n}_malignant"][i] for i, e in enumerate(exams)
                     for s, n in (("L", "left"), ("R", "right"))}
        benign = ({(e, s): checked[f"{n}_benign"][i] for i, e in enumerate(exams)
                   for s, n in (("L", "left"), ("R", "right"))} if has_benign else None)
        return ModelScores(malignant, benign, "left_malignant/right_malignant", [], warnings)

    model_col = columns.model or next(
        (c for c in ("score", "malignant") if c in table.header), None)
    if model_col is None:
        raise ConfigError(f"{table.path.name}: which column holds the model's score?",
                          hint=f"name it with --model-column; columns: {', '.join(table.header)}")
    exam_col = exam_column(table, columns)
    table.require(exam_col, columns.side, model_col,
                  option="--exam-column/--side-column/--model-column")
    keys = []
    raw: list[tuple[int, float]] = []
    for row in table.rows:
        key = (exam_id(table, row, exam_col), parse_side(table, row, columns.side))
        no_duplicate(table, row, key, seen)
        keys.append(key)
        raw.append((row.line, parse_float(table, row, model_col)))
    check_both_sides(keys, table.path.name)
    scores = check_probabilities(table, model_col, raw, False, warnings)
    return ModelScores(dict(zip(keys, scores, strict=True)), None, model_col, [], warnings)
