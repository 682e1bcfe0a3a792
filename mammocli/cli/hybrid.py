"""`mammocli hybrid`: blend radiologists' scores with the model's, per reader, and score them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, RenderableType
from rich.table import Table

from ..analysis.hybrid import (
    DEFAULT_WEIGHT,
    HybridMetrics,
    SweepPoint,
    breasts_csv,
    check_weight,
    hybrid_pngs,
    hybrid_report,
    read_reader_scores,
)
from ..analysis.metrics import DEFAULT_RESAMPLES, Estimate
from ..analysis.predictions import load_predictions
from ..analysis.tables import read_labels
from ..console import cell, log, stderr
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
from .output import check_output, check_output_folder, emit, write_file

_WIDE = 150


def print_wide(renderable: RenderableType) -> None:
    """Print to stderr at least 150 columns wide: the CI columns do not fit 80 and would be cut."""
    Console(stderr=True, width=max(stderr.width, _WIDE)).print(renderable)


def _fmt(e: Estimate) -> str:
    if e.ci_low is None or e.ci_high is None:
        return f"{e.estimate:.3f}"
    return f"{e.estimate:.3f} ({e.ci_low:.3f}-{e.ci_high:.3f})"


def metrics_table(m: HybridMetrics, weight: float) -> Table:
    ci = f"{m.ci_level:.0%} CI, {m.n_bootstrap} exam resamples" if m.n_bootstrap else "no CIs"
    table = Table(title=f"hybrid w={weight:g}: {m.n_breasts} breasts, {m.n_exams} exams, "
                        f"{m.n_positive} malignant ({ci})")
    for col in ("", "AUROC", "AUPRC", "hybrid AUROC", "hybrid AUPRC", "hybrid - reader AUROC"):
        table.add_column(col, justify="left" if not col else "right")
    roc, pr = m.auroc, m.auprc
    table.add_row("model", _fmt(roc.model), _fmt(pr.model), "", "", "")
    for r in roc.readers:
        table.add_row(cell(r), _fmt(roc.readers[r]), _fmt(pr.readers[r]), _fmt(roc.hybrids[r]),
                      _fmt(pr.hybrids[r]), _fmt(roc.hybrid_minus_reader[r]))
    table.add_row("mean of readers' AUCs", _fmt(roc.mean_of_readers), _fmt(pr.mean_of_readers),
                  _fmt(roc.mean_of_hybrids), _fmt(pr.mean_of_hybrids),
                  _fmt(roc.mean_hybrid_minus_mean_reader))
    table.add_row("averaged reader score", _fmt(roc.averaged_reader_score),
                  _fmt(pr.averaged_reader_score), "", "", "")
    return table


def sweep_table(points: list[SweepPoint]) -> Table:
    table = Table(title="sweep: mean of the hybrids' AUCs by reader weight w")
    for col in ("w", "mean hybrid AUROC", "mean hybrid AUPRC"):
        table.add_column(col, justify="right")
    for p in points:
        table.add_row(f"{p.weight:g}", f"{p.mean_hybrid_auroc:.4f}", f"{p.mean_hybrid_auprc:.4f}")
    return table


def register(app: typer.Typer) -> None:
    @app.command("hybrid")
    @handle_errors
    def hybrid(
        radiologist_scores: Annotated[Path, typer.Option(
            "--radiologist-scores", exists=True, dir_okay=False,
            help="CSV of radiologists' probabilities of malignancy, one row per breast "
                 "(long: exam_id, side, reader, score [, label]; or wide with --reader-columns).")],
        predictions: Annotated[Path, typer.Option(
            "--predictions", exists=True,
            help="Model predictions: result JSON / JSON Lines / a folder of them, or a CSV.")],
        weight: Annotated[float, typer.Option(
            "--weight", help="w in w * reader + (1 - w) * model.")] = DEFAULT_WEIGHT,
        labels: Annotated[Path | None, typer.Option(
            "--labels", exists=True, dir_okay=False,
            help="Labels CSV (else a label column of the scores file).")] = None,
        output: Annotated[Path | None, typer.Option(
            "-o", "--output", help="Write the result here instead of stdout.")] = None,
        fmt: Annotated[Format, typer.Option(
            "--format", help="json: everything; csv: the per-breast table.")] = Format.json,
        do_sweep: Annotated[bool, typer.Option(
            "--sweep", help="Also report the hybrids' AUCs for w from 0 to 1.")] = False,
        sweep_step: Annotated[float, typer.Option(
            "--sweep-step", help="Step of w in --sweep.")] = 0.1,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="Replace an existing output file.")] = False,
        exam_column: ExamColumn = None,
        side_column: SideColumn = "side",
        label_column: LabelColumn = "label",
        model_column: ModelColumn = None,
        reader_columns: Annotated[list[str] | None, typer.Option(
            "--reader-columns",
            help="Wide layout: reader columns, names or globs (e.g. 'Reader*_POM'); "
                 "repeat or comma-separate.")] = None,
        reader_column: Annotated[str, typer.Option(
            "--reader-column", help="Long layout: the reader name column.")] = "reader",
        score_column: Annotated[str, typer.Option(
            "--score-column", help="Long layout: the reader score column.")] = "score",
        plots: Annotated[Path | None, typer.Option(
            "--plots", file_okay=False, help="Write the model's ROC and PR curves (exam "
                                             "level) with each reader as a point (PNG).")
        ] = None,
        score: ScoreOption = ScoreChoice.auto,
        n_bootstrap: BootstrapOption = DEFAULT_RESAMPLES,
        seed: BootstrapSeedOption = 0,
        quiet: TableQuietOption = False,
    ) -> None:
        """Hybrid reader + model: w * radiologist + (1 - w) * model per reader, with AUCs."""
        check_weight(weight)
        check_output(output, overwrite)
        check_output_folder(plots, ["roc.png", "pr.png"], overwrite, "--plots")
        columns = make_columns(exam_column, side_column, label_column, model_column,
                               reader_columns, reader_column, score_column)
        scores = read_reader_scores(radiologist_scores, columns)
        model = load_predictions(predictions, columns, score.value)
        label_table = read_labels(labels, columns) if labels is not None else None
        report = hybrid_report(scores, model, label_table, weight=weight,
                               n_bootstrap=n_bootstrap, seed=seed,
                               sweep_step=sweep_step if do_sweep else None)
        for w in report.warnings + report.failed_predictions:
            log.warning(w)
        if plots is not None:
            roc, pr = hybrid_pngs(scores, model, label_table, n_bootstrap=n_bootstrap, seed=seed)
            write_file(plots / "roc.png", roc)
            write_file(plots / "pr.png", pr)
        if report.metrics is not None and not quiet:
            print_wide(metrics_table(report.metrics, weight))
        if report.sweep is not None and not quiet:
            print_wide(sweep_table(report.sweep))
        if fmt is Format.csv:
            emit(breasts_csv(report.breasts, report.readers), output)
            return
        emit(report.model_dump_json(indent=2), output)
