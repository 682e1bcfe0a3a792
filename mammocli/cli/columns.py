"""CSV column options shared by `hybrid` and `evaluate`."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ..analysis.tables import Columns


class Format(str, Enum):
    json = "json"
    csv = "csv"


ExamColumn = Annotated[str | None, typer.Option(
    "--exam-column", help="Exam id column of every CSV (default: exam_id, else `index`).")]
SideColumn = Annotated[str, typer.Option("--side-column", help="Side column (L/R, left/right).")]
LabelColumn = Annotated[str, typer.Option("--label-column", help="Label column (1 = malignant).")]
ModelColumn = Annotated[str | None, typer.Option(
    "--model-column",
    help="Model score column of a predictions CSV (default: score, else malignant).")]


def make_columns(exam: str | None, side: str, label: str, model: str | None,
                 readers: list[str] | None = None, reader: str = "reader",
                 score: str = "score") -> Columns:
    # `--reader-columns` takes a comma-separated list as well as repeats
    patterns = tuple(p.strip() for r in readers or [] for p in r.split(",") if p.strip())
    return Columns(exam=exam or "exam_id", side=side, label=label, reader=reader, score=score,
                   model=model, readers=patterns, exam_explicit=exam is not None)

# Options shared by `hybrid` and `evaluate`.
BootstrapOption = Annotated[int, typer.Option(
    "--n-bootstrap", min=0, help="Bootstrap resamples of exams (0: no CIs).")]
BootstrapSeedOption = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")]
TableQuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No table on stderr.")]


class ScoreChoice(str, Enum):
    auto = "auto"
    raw = "raw"
    calibrated = "calibrated"


ScoreOption = Annotated[ScoreChoice, typer.Option(
    "--score", help="Result files: which malignant probability to read. auto: the calibrated "
                    "one (predict --site) when every result has it, else raw.")]
