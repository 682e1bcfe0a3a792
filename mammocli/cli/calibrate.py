"""`mammocli calibrate`: a site's calibration and operating points, written to site.json."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..analysis.calibration import DEFAULT_FOLDS
from ..analysis.calibration_plots import reliability_png
from ..analysis.metrics import DEFAULT_RESAMPLES
from ..analysis.operating_points import Target
from ..analysis.predictions import load_predictions
from ..analysis.site import SiteFile, build_site, match, read_model_identity
from ..analysis.tables import read_labels
from ..console import cell, log
from .columns import (
    BootstrapOption,
    BootstrapSeedOption,
    ExamColumn,
    LabelColumn,
    ModelColumn,
    SideColumn,
    TableQuietOption,
    make_columns,
)
from .common import handle_errors
from .hybrid import _fmt, print_wide
from .output import check_output, check_output_folder, emit, write_file


class MethodChoice(str, Enum):
    logistic = "logistic"
    isotonic = "isotonic"


def site_tables(site: SiteFile) -> list[Table]:
    r = site.calibration_report
    cal = Table(title=f"calibration ({r.method}), {r.evaluated_on}, "
                      f"{r.ci_level:.0%} CI, {r.n_bootstrap} exam resamples")
    for col in ("", "Brier", f"ECE ({r.n_bins} bins)"):
        cal.add_column(col, justify="right")
    cal.add_row("before", _fmt(r.before.brier), _fmt(r.before.ece))
    cal.add_row("after", _fmt(r.after.brier), _fmt(r.after.ece))
    cal.add_row("change", _fmt(r.brier_change), _fmt(r.ece_change))
    tables = [cal]
    if site.operating_points:
        ops = Table(title="operating points (flag when score >= threshold)")
        for col in ("level", "target", "threshold", "sensitivity", "specificity", "PPV",
                    "recall rate"):
            ops.add_column(col, justify="right")
        for op in site.operating_points:
            ops.add_row(op.level, cell(op.target.name), _fmt(op.threshold), _fmt(op.sensitivity),
                        _fmt(op.specificity), _fmt(op.ppv) if op.ppv else "-",
                        _fmt(op.recall_rate))
        tables.append(ops)
    return tables


def register(app: typer.Typer) -> None:
    @app.command("calibrate")
    @handle_errors
    def calibrate_command(
        predictions: Annotated[Path, typer.Option(
            "--predictions", exists=True,
            help="Model predictions: result JSON / JSON Lines / a folder of them (these name "
                 "the weights), or a CSV.")],
        labels: Annotated[Path, typer.Option(
            "--labels", exists=True, dir_okay=False,
            help="Labels CSV: exam, side, label; or per exam left_malignant, right_malignant.")],
        output: Annotated[Path | None, typer.Option(
            "-o", "--output", help="Write site.json here instead of stdout.")] = None,
        method: Annotated[MethodChoice, typer.Option(
            "--method", help="Logistic on the logit (Platt) or isotonic.")
        ] = MethodChoice.logistic,
        target_specificity: Annotated[list[float] | None, typer.Option(
            "--target-specificity", help="Operating point at this specificity (repeatable).")
        ] = None,
        target_sensitivity: Annotated[list[float] | None, typer.Option(
            "--target-sensitivity", help="Operating point at this sensitivity (repeatable).")
        ] = None,
        recall_rate: Annotated[list[float] | None, typer.Option(
            "--recall-rate", help="Operating point flagging at most this fraction of cases "
                                  "(repeatable).")] = None,
        folds: Annotated[int, typer.Option(
            "--folds", min=2, help="Cross-validation folds (by exam) of the before/after "
                                   "report.")] = DEFAULT_FOLDS,
        plots: Annotated[Path | None, typer.Option(
            "--plots", file_okay=False,
            help="Write the reliability diagram (PNG, before and after) into this folder.")
        ] = None,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="Replace existing output files.")] = False,
        exam_column: ExamColumn = None,
        side_column: SideColumn = "side",
        label_column: LabelColumn = "label",
        model_column: ModelColumn = None,
        n_bootstrap: BootstrapOption = DEFAULT_RESAMPLES,
        seed: BootstrapSeedOption = 0,
        quiet: TableQuietOption = False,
    ) -> None:
        """Fit a calibration and operating points on your labelled exams: site.json."""
        check_output(output, overwrite)
        check_output_folder(plots, ["reliability.png"], overwrite, "--plots")
        targets = [Target(kind="specificity", value=v).check() for v in target_specificity or []]
        targets += [Target(kind="sensitivity", value=v).check() for v in target_sensitivity or []]
        targets += [Target(kind="recall_rate", value=v).check() for v in recall_rate or []]
        columns = make_columns(exam_column, side_column, label_column, model_column)
        preds = load_predictions(predictions, columns)
        identity = read_model_identity(predictions)
        matched = match(preds, read_labels(labels, columns), predictions.name, labels.name)
        site = build_site(matched, identity, method.value, targets, folds=folds,
                          n_bootstrap=n_bootstrap, seed=seed)
        for w in site.warnings:
            log.warning(w)
        d = site.data
        if d.unlabelled_prediction_exams:
            log.warning("%d predicted exams have no labels", d.unlabelled_prediction_exams)
        if d.labelled_exams_without_predictions:
            log.warning("%d labelled exams have no predictions",
                        d.labelled_exams_without_predictions)
        if plots is not None:
            r = site.calibration_report
            write_file(plots / "reliability.png", reliability_png(
                {"raw": r.before.reliability, f"{r.method} (held out)": r.after.reliability},
                f"reliability, {d.n_breasts} breasts"))
        if not quiet:
            for table in site_tables(site):
                print_wide(table)
        emit(site.to_json(), output)
