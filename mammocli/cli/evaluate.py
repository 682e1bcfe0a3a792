"""`mammocli evaluate`: AUROC/AUPRC with CIs, ROC/PR plots, thresholds and subgroups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..analysis.curves import roc_pr_pngs
from ..analysis.evaluation import (
    Evaluated,
    EvaluationReport,
    Subgroup,
    evaluate,
    metarepo_breast_csv,
    report_csv,
)
from ..analysis.metrics import DEFAULT_RESAMPLES
from ..analysis.predictions import ModelScores, load_predictions
from ..analysis.report import ReportInputs, evaluation_cases, write_report
from ..analysis.shift import ShiftReport
from ..analysis.site_evaluation import (
    SitePoints,
    parse_fields,
    reliability,
    shift_by_header,
    site_points,
)
from ..analysis.tables import read_labels
from ..console import cell, log
from .columns import (
    BootstrapOption,
    BootstrapSeedOption,
    ExamColumn,
    Format,
    LabelColumn,
    ModelColumn,
    ScoreChoice,
    ScoreOption,
    SideColumn,
    TableQuietOption,
    make_columns,
)
from .common import handle_errors
from .hybrid import _fmt, print_wide
from .output import check_output, check_output_folder, emit, write_file


def report_table(r: EvaluationReport) -> Table:
    table = Table(title=f"evaluation ({r.ci_level:.0%} CI, {r.n_bootstrap} resamples)")
    for col in ("level", "task", "n", "positive", "AUROC", "AUPRC"):
        table.add_column(col, justify="right")
    for level, block in (("breast", r.breast_level), ("exam", r.exam_level)):
        for task, m in block.items():
            table.add_row(level, task, str(m.n), str(m.n_positive), _fmt(m.auroc), _fmt(m.auprc))
    for s in r.subgroups:
        table.add_row(cell(f"{s.column}={s.value}"), "malignant", str(s.n_breasts),
                      str(s.n_positive),
                      _fmt(s.auroc) if s.auroc else "-", _fmt(s.auprc) if s.auprc else "-")
    return table


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @handle_errors
    def evaluate_command(
        predictions: Annotated[Path, typer.Option(
            "--predictions", exists=True,
            help="Model predictions: result JSON / JSON Lines / a folder of them, or a CSV.")],
        labels: Annotated[Path, typer.Option(
            "--labels", exists=True, dir_okay=False,
            help="Labels CSV: exam, side, label [, benign_label, other columns]; or per exam "
                 "left_malignant, right_malignant [, left_benign, right_benign].")],
        by: Annotated[list[str] | None, typer.Option(
            "--by", help="Subgroups by a labels column; numeric bins as age:40,50,60,70.")
        ] = None,
        threshold: Annotated[list[float] | None, typer.Option(
            "--threshold",
            help="Sensitivity/specificity at these thresholds (repeatable; default: 0.5).")
        ] = None,
        plots: Annotated[Path | None, typer.Option(
            "--plots", file_okay=False, help="Write ROC and PR curves (PNG) into this folder.")
        ] = None,
        metarepo_csv: Annotated[Path | None, typer.Option(
            "--metarepo-csv", dir_okay=False,
            help="Write breast-level predictions in the metarepository's format.")] = None,
        output: Annotated[Path | None, typer.Option(
            "-o", "--output", help="Write the result here instead of stdout.")] = None,
        fmt: Annotated[Format, typer.Option(
            "--format", help="json: the whole report; csv: one row per level, task and metric.")
        ] = Format.json,
        by_header: Annotated[list[str] | None, typer.Option(
            "--by-header", help="Shift report by fields the results carry (comma-separated, "
                                "repeatable), e.g. Manufacturer,ManufacturerModelName,KVP,"
                                "PixelSpacing,ImageSize,TissueMean: per subgroup AUROC with "
                                "CIs, score distributions, warnings.")] = None,
        report: Annotated[Path | None, typer.Option(
            "--report", dir_okay=False, help="Write one self-contained HTML report (tables, "
                                             "ROC, PR, reliability, subgroup forest plot).")
        ] = None,
        site: Annotated[Path | None, typer.Option(
            "--site", exists=True, dir_okay=False,
            help="site.json of `mammocli calibrate`: its operating points at their thresholds "
                 "on these labels (default: the flags of results of predict --site).")
        ] = None,
        score: ScoreOption = ScoreChoice.auto,
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
        """Evaluate predictions against labels: AUCs with bootstrap CIs, curves, subgroups."""
        check_output(output, overwrite)
        check_output(metarepo_csv, overwrite, "--metarepo-csv")
        check_output(report, overwrite, "--report")
        check_output_folder(plots, ["roc.png", "pr.png"], overwrite, "--plots")
        columns = make_columns(exam_column, side_column, label_column, model_column)
        groups = [Subgroup.parse(b) for b in by or []]
        fields = parse_fields(by_header or [])
        preds = load_predictions(predictions, columns, score.value)
        label_table = read_labels(labels, columns)
        ev = evaluate(preds, label_table, threshold, groups, n_bootstrap, seed)
        r = ev.report
        for w in [*r.warnings, *r.failed_predictions]:
            log.warning(w)
        if r.unlabelled_prediction_exams:
            log.warning("%d predicted exams have no labels", len(r.unlabelled_prediction_exams))
        if r.labelled_exams_without_predictions:
            log.warning("%d labelled exams have no predictions",
                        len(r.labelled_exams_without_predictions))
        shift = shift_by_header(ev, preds, fields) if fields else None
        raw = load_predictions(predictions, columns, "raw") if preds.calibrated else preds
        points, notes = site_points(ev, raw, predictions, site)
        for w in notes:
            log.warning(w)
        ops = points.points if points is not None else []
        if plots is not None:
            roc, pr = roc_pr_pngs(evaluation_cases(ev, ops), (), n_bootstrap, seed, r.ci_level)
            write_file(plots / "roc.png", roc)
            write_file(plots / "pr.png", pr)
        if metarepo_csv is not None:
            write_file(metarepo_csv, metarepo_breast_csv(ev))
        if report is not None:
            _write_report(report, ev, preds, raw, predictions, labels, shift, points, seed)
        if not quiet:
            print_wide(report_table(r))
            if points is not None:
                print_wide(points_table(points))
            if shift is not None:
                print_wide(shift_table(shift))
        if shift is not None:
            for w in shift.warnings:
                log.warning(w)
        if fmt is Format.csv:
            emit(report_csv(r), output)
            return
        doc = json.loads(r.model_dump_json())
        if shift is not None:
            doc["shift"] = json.loads(shift.model_dump_json())
        if points is not None:
            doc["operating_points"] = json.loads(points.model_dump_json())
        emit(json.dumps(doc, indent=2), output)


def _write_report(path: Path, ev: Evaluated, preds: ModelScores, raw: ModelScores,
                  predictions: Path, labels: Path, shift: ShiftReport | None,
                  points: SitePoints | None, seed: int) -> None:
    calibration, why = reliability(ev, raw, preds.calibrated, seed=seed)
    if why is not None:
        log.warning(why)
    write_report(path, ReportInputs(
        evaluation=ev, calibration=calibration, shift=shift,
        operating_points=points.points if points is not None else (),
        operating_points_note="" if points is None else _points_note(points),
        fitted_points=points.fitted if points is not None else (),
        sources={"predictions": predictions.name, "labels": labels.name,
                 "scores": preds.source}))


def _points_note(p: SitePoints) -> str:
    return (f"the operating points of {p.source}, each at its stored threshold (on the raw "
            "probability; flag when score >= threshold), measured on these labels: the "
            "threshold is fixed, so the CIs are those of these exams only.")


def points_table(p: SitePoints) -> Table:
    table = Table(title=cell(f"operating points of {p.source} on these labels"))
    for col in ("level", "target", "threshold", "sensitivity", "specificity", "PPV",
                "recall rate"):
        table.add_column(col, justify="right")
    for op in p.points:
        table.add_row(op.level, cell(op.target.name), f"{op.threshold.estimate:.4g}",
                      _fmt(op.sensitivity), _fmt(op.specificity),
                      _fmt(op.ppv) if op.ppv else "-", _fmt(op.recall_rate))
    return table


def shift_table(s: ShiftReport) -> Table:
    table = Table(title=f"shift report: {s.n} exams, {s.n_positive} malignant, AUROC "
                        f"{_fmt(s.auroc)} ({s.ci_level:.0%} CI); subgroups against the rest")
    for col in ("subgroup", "exams", "malignant", "AUROC", "non-malignant scores median (IQR)",
                "flag"):
        table.add_column(col, justify="left" if col == "subgroup" else "right")
    for g in s.subgroups:
        ns = g.negative_scores
        flag = ", ".join(w for w, on in (("AUROC", g.auroc_differs),
                                         ("scores", g.scores_differ)) if on)
        table.add_row(cell(f"{g.column}={g.value}"), str(g.n), str(g.n_positive),
                      _fmt(g.auroc) if g.auroc else "-",
                      "-" if ns is None else f"{ns.median:.3g} ({ns.q25:.3g}-{ns.q75:.3g})",
                      flag or cell(g.note or ""))
    return table
