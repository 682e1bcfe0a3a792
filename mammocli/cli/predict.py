"""`mammocli predict` and `mammocli heatmaps`: parse the options, call `mammocli.api`, render,
choose the exit code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..analysis.site import load_site
from ..api import (
    ExamOutcome,
    ModelRequest,
    OutputsFailed,
    PredictInterrupted,
    RunOptions,
    RunReport,
    export_many,
    load_pipeline_config,
    predict_many,
)
from ..config import FlipMode, RngMode
from ..console import ExamProgress, cell, log, say, stderr
from ..errors import EXIT_INTERRUPTED, ConfigError, InputError
from ..inference.devices import configure_threads, tune_allocator
from ..inference.sources import SourceRequest, exams_to_run
from ..inference.utilisation import utilisation_text
from ..io.dicom.options import DEFAULT_MAX_PIXELS, DicomOptions, GroupBy, VoiMode
from ..io.dicomweb import is_dicomweb_path
from ..io.discover import discover_exams
from ..outputs.dicom_sink import DicomHeatmaps, DicomSrSink
from ..outputs.preview import picture_writers
from ..outputs.progress import ProgressLog
from ..outputs.schema import printable
from ..outputs.sinks import (
    CsvSink,
    HeatmapFolders,
    ImageCsvSink,
    Outputs,
    PlannedExam,
    plan_exams,
    result_sink,
)
from ..reporting import stage_hook
from ..vocabulary import (
    GMIC_MEMBERS,
    Family,
    ModelKind,
    Precision,
    Variant,
    family_of,
    parse_variant,
)
from ..weights.card import with_trained_sizes
from ..weights.overrides import WEIGHTS_HELP, parse_weight_overrides, weights_locator
from .common import handle_errors, report_error
from .presets import FAST_HELP, apply_fast


def parse_members(text: str) -> tuple[Variant, ...]:
    """`--gmic-models 1,2,3` -> the members' variants, in the order given, without repeats."""
    out: list[Variant] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if not part.isdigit() or int(part) not in GMIC_MEMBERS:
            raise ConfigError(f"unknown GMIC model {part!r} in --gmic-models",
                              hint="the official members are 1, 2, 3, 4 and 5 "
                                   "(default: all five, the authors' ensemble)")
        out.append(GMIC_MEMBERS[int(part)])
    if not out:
        raise ConfigError("--gmic-models needs at least one member (1-5)")
    return tuple(dict.fromkeys(out))


def choose_variants(model: ModelKind, variants: str | None, gmic_models: str | None,
                    ) -> tuple[Variant, ...]:
    """--variants belong to the DMV-CNN, --gmic-models (its members) to GMIC."""
    if family_of(model) is Family.GMIC:
        if variants is not None:
            raise ConfigError("--variants is for the DMV-CNN models",
                              hint="GMIC's choice is --gmic-models (e.g. 1 or 1,2,3,4,5)")
        return parse_members(gmic_models or "1,2,3,4,5")
    if gmic_models is not None:
        raise ConfigError("--gmic-models needs --model gmic")
    return parse_variants(variants or "image-only,image-and-heatmaps")


def parse_variants(text: str) -> tuple[Variant, ...]:
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            out.append(parse_variant(part))
        except ValueError:
            raise ConfigError(f"unknown variant {part.lower()!r}; use image-only and/or "
                              "image-and-heatmaps") from None
    if not out:
        raise ConfigError("--variants needs at least one variant")
    return tuple(dict.fromkeys(out))


@contextmanager
def _rendering(total: int, quiet: bool, log_file: ProgressLog | None = None,
               ) -> Iterator[Callable[[PlannedExam, ExamOutcome], None]]:
    """The per-exam callback: progress (a bar with the stage on a terminal, plain lines with an
    ETA in logs), a line per skipped or failed exam, the --progress-json line."""
    with ExamProgress(total, enabled=not quiet) as shown, stage_hook(shown.stage):

        def on_outcome(planned: PlannedExam, outcome: ExamOutcome) -> None:
            status = ("skipped" if outcome.skipped is not None
                      else "failed" if outcome.failure is not None else "ok")
            shown.exam_done(printable(planned.exam.exam_id), status)
            if log_file is not None:
                log_file.exam(planned.exam.exam_id, status)
            if outcome.skipped is not None:
                log.warning("%s: skipped, %s", printable(planned.exam.exam_id), outcome.skipped)
            elif outcome.failure is not None:
                prefix = f"{planned.exam.exam_id}: "
                error = outcome.failure.error
                report_error(InputError(error if error.startswith(prefix) else prefix + error,
                                        outcome.failure.hint))

        yield on_outcome


def throughput_line(report: RunReport) -> str:
    """exams/s and where the time went (summed over exams; stages overlap when the next exam
    is prepared while one computes)."""
    rate = report.exams_per_s
    stages = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.stages.items())
    return (f"{len(report.outcomes)} exam(s) in {report.elapsed_s:.1f} s"
            + (f", {rate:.2f} exams/s" if rate else "") + f"; time: {stages}"
            + (f"; {utilisation_text(report.utilisation)}" if report.utilisation else ""))


def _summary(report: RunReport) -> None:
    table = Table(title="mammocli predict", show_lines=False)
    for col in ("exam", "status", "L malignant", "R malignant", "seconds / error"):
        table.add_column(col)
    for o in report.outcomes:  # user-supplied strings through cell(): never read as markup
        if o.failure is not None:
            table.add_row(cell(printable(o.exam.exam_id)), "[red]failed[/red]", "", "",
                          cell(printable(o.failure.error)))
        elif o.output is not None and o.output.result is not None:
            r = o.output.result
            table.add_row(cell(printable(r.exam_id)), "ok", f"{r.primary.left.malignant:.4f}",
                          f"{r.primary.right.malignant:.4f}", f"{r.duration_s:.1f}")
    stderr.print(table)


# Options shared by `predict` and `heatmaps`.
PrecisionOption = Annotated[Precision, typer.Option(
    "--precision",
    help="fp32: exact (default). bf16: networks in bfloat16, faster on CPUs with AVX512-BF16/AMX "
    "and on GPUs, outputs differ slightly (opt-in). tf32: CUDA only, TensorFloat-32 matmuls "
    "(opt-in, approximate).")]
RngStreamOption = Annotated[RngMode, typer.Option(
    "--rng-stream",
    help="exam: every exam starts from the seed; run: one stream across exams, as the "
    "authors' scripts (to reproduce their outputs).")]
FlipOption = Annotated[FlipMode, typer.Option(
    "--horizontal-flip",
    help="auto: decide per image from the tissue side; no/yes: the authors' flag.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
ThreadsOption = Annotated[int, typer.Option(
    "--threads", show_default=False,
    help="CPU threads for torch (default: all the CPUs this process may use).")]


def register(app: typer.Typer) -> None:
    @app.command("predict")
    @handle_errors
    def predict(
        path: str | None = typer.Argument(
            None, help="An exam folder, a root folder of exam folders, or a DICOMweb server "
            "(dicomweb+http(s)://HOST/BASE, with --study, --studies-file or --query).",
            show_default=False),
        output_arg: str | None = typer.Option(
            None, "--output", "-o",
            help="Write results here instead of stdout: a file (JSON, or JSON Lines for several "
            "exams), or a folder (ending in /) for one <exam_id>.json per exam."),
        csv_path: Path | None = typer.Option(
            None, "--csv", help="Also write the primary variant as the authors' 4-column CSV "
            "(per breast)."),
        image_csv: Path | None = typer.Option(
            None, "--image-csv", help="Also write one row per image (exam, view, file, "
            "benign, malignant) for per-image models: gmic, image-wise."),
        save_heatmaps: Path | None = typer.Option(
            None, "--save-heatmaps", help="Also write per-image maps here, one folder per "
            "exam: DMV-CNN heatmaps or GMIC saliency maps (arrays, PNG figures, index JSON)."),
        preview: Path | None = typer.Option(
            None, "--preview", help="Also write one picture per exam here (<exam_id>.png): "
            "the four views as hung, with heatmap or saliency, and the probabilities."),
        weights_dir: Path | None = typer.Option(
            None, "--weights-dir", help="Folder holding the weight files under their official "
            "names (default: the cache, downloaded on first use)."),
        weights: str | None = typer.Option(None, "--weights", help=WEIGHTS_HELP),
        model: ModelKind = typer.Option(
            ModelKind.VIEW_WISE, "--model",
            help="view-wise (the DMV-CNN of the paper), image-wise (DMV-CNN), or gmic "
            "(GMIC, per image; see README Models)."),
        variants: str | None = typer.Option(
            None, "--variants", help="DMV-CNN, comma-separated: image-only, "
            "image-and-heatmaps (default: both)."),
        gmic_models: str | None = typer.Option(
            None, "--gmic-models", help="GMIC members, comma-separated 1-5 (default: all "
            "five, the authors' ensemble: the mean of their y_fusion per image)."),
        tta: int | None = typer.Option(
            None, "--tta", show_default=False, help="Test-time augmentation draws; 0 = none "
            "(default: 10, the authors'; --fast: 0)."),
        fast: bool = typer.Option(False, "--fast", help=FAST_HELP),
        seed: int = typer.Option(0, "--seed", help="Seed of both random generators."),
        rng_stream: RngStreamOption = RngMode.EXAM,
        horizontal_flip: FlipOption = FlipMode.AUTO,
        device: DeviceOption = "auto",
        devices: str | None = typer.Option(
            None, "--devices", help="Several devices, one worker process each, exams shared "
            "out (e.g. cuda:0,cuda:1; cuda = every GPU; cpu,cpu splits the CPU threads)."),
        prepare_workers: int = typer.Option(
            0, "--prepare-workers", min=0, help="Read and crop upcoming exams in N processes "
            "(default: one thread; per device with --devices). Helps a GPU, which computes "
            "faster than one core crops."),
        pipeline_config: Path | None = typer.Option(
            None, "--pipeline-config", help="YAML overriding pipeline sizes (advanced; the "
            "paper's by default), e.g. the demo's pipeline.yaml from mammocli examples make."),
        views_csv: Path | None = typer.Option(
            None, "--views-csv", help="CSV mapping files (relative to PATH) to views: "
            "file,view columns. Overrides what the files say."),
        voi: VoiMode = typer.Option(
            VoiMode.NONE, "--voi", help="DICOM: none = stored values rescaled to 16 bit (the "
            "authors' convention); window = apply the file's VOI LUT/window first."),
        allow_synthetic: bool = typer.Option(False, "--allow-synthetic",
                                             help="DICOM: accept synthesized 2D views."),
        allow_for_processing: bool = typer.Option(
            False, "--allow-for-processing", help="DICOM: accept FOR PROCESSING (raw) images."),
        allow_secondary_capture: bool = typer.Option(
            False, "--allow-secondary-capture",
            help="DICOM: accept secondary captures (e.g. digitised film)."),
        one_per_view: bool = typer.Option(
            False, "--one-per-view", help="Keep only the latest image per view (default: "
            "keep all; test-time augmentation draws among them)."),
        include_uids: bool = typer.Option(
            False, "--include-uids", help="DICOM: add Study/Series/SOP Instance UIDs to "
            "results (identifying data: off by default)."),
        group_by: GroupBy = typer.Option(
            GroupBy.AUTO, "--group-by", help="DICOM: how files form exams. auto: one per study, "
            "or the folder when per-image studies (digitised film) in it make one four-view set "
            "of one patient; study; folder: each folder under PATH; patient (hashed id)."),
        max_pixels: int = typer.Option(
            DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Refuse images (PNG or DICOM) "
            "larger than this many pixels (width x height) before decoding them."),
        resume: bool = typer.Option(False, "--resume",
                                    help="With -o FILE or -o DIR/: skip exams done by an "
                                    "earlier run of the same input, redo failed ones; --csv "
                                    "rows merge."),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Replace existing outputs (results, CSV, heatmaps)."),
        study: list[str] | None = typer.Option(  # noqa: B008 - typer's list option
            None, "--study", help="DICOMweb: a StudyInstanceUID to run (repeatable)."),
        studies_file: Path | None = typer.Option(
            None, "--studies-file", help="DICOMweb: a file of StudyInstanceUIDs, one per line."),
        query: list[str] | None = typer.Option(  # noqa: B008 - typer's list option
            None, "--query", help="DICOMweb: run the studies a QIDO-RS search finds, "
            "KEY=VALUE (repeatable), e.g. ModalitiesInStudy=MG, StudyDate=20240101-20240131."),
        dicom_out: Path | None = typer.Option(
            None, "--dicom-out", help="DICOM input: also write one DICOM SR per exam "
            "(<exam_id>.sr.dcm) into this folder."),
        store_back: bool = typer.Option(
            False, "--store-back", help="DICOMweb input: send each exam's DICOM SR to the "
            "server (STOW-RS), as a new series of its study."),
        dicom_heatmaps: DicomHeatmaps = typer.Option(
            DicomHeatmaps.SEG, "--dicom-heatmaps", help="With --dicom-out/--store-back and "
            "the image-and-heatmaps variant: seg = each image's heatmaps as a fractional DICOM "
            "Segmentation a viewer overlays; sc = colour Secondary Captures (heatmap over the "
            "image, per image a malignant and a benign one); seg,sc = both; none = the SR "
            "only."),
        exams_csv: Path | None = typer.Option(
            None, "--exams", help="An exam list (exams.csv from mammocli scan: exam folders "
            "or StudyInstanceUIDs) instead of PATH."),
        dicomweb: str | None = typer.Option(
            None, "--dicomweb", help="With --exams: the DICOMweb server of the list's "
            "StudyInstanceUID rows (dicomweb+http(s)://HOST/BASE)."),
        shard: str | None = typer.Option(
            None, "--shard", help="Run only shard K of N (K/N, numbered from 1; auto: from "
            "SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX). Exams go to shards by a hash of "
            "their id."),
        retry_failed: bool = typer.Option(
            False, "--retry-failed", help="With -o DIR/: run again only the exams whose "
            "record there says failed (implies --resume)."),
        progress_json: Path | None = typer.Option(
            None, "--progress-json", help="Append one JSON line per finished exam (counts, "
            "rate, ETA) and a summary line to this file, for dashboards."),
        precision: PrecisionOption = Precision.FP32,
        threads: ThreadsOption = 0,
        site: Path | None = typer.Option(
            None, "--site", exists=True, dir_okay=False, help="A site.json of `mammocli "
            "calibrate` (fitted on these weights): add calibrated probabilities and the flag at "
            "each operating point to every result."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr."),
    ) -> None:
        """Predict benign and malignant probabilities per breast. Research use only."""
        site_file = load_site(site) if site is not None else None  # checked before any exam
        tune_allocator()
        configure_threads(threads)
        preset = apply_fast(fast, model, variants, gmic_models, tta)
        config = load_pipeline_config(pipeline_config, tta=preset.tta, seed=seed,
                                      rng_mode=rng_stream)
        config = with_trained_sizes(config, pipeline_config, weights_dir,
                                    parse_weight_overrides(weights))
        chosen = choose_variants(model, preset.variants, preset.gmic_models)
        dicom = DicomOptions(voi=voi, allow_synthetic=allow_synthetic,
                             allow_for_processing=allow_for_processing,
                             allow_secondary_capture=allow_secondary_capture,
                             one_per_view=one_per_view, include_uids=include_uids,
                             group_by=group_by, max_pixels=max_pixels)
        resume = resume or retry_failed
        if output_arg is None and resume:  # before any study is retrieved
            raise ConfigError("--resume needs -o FILE or -o DIR/ (stdout cannot be resumed)")
        uid_root = _sr_uid_root(path, dicom_out, store_back)
        source = SourceRequest(path=path, studies=tuple(study or ()),
                               studies_file=studies_file, queries=tuple(query or ()),
                               exams=exams_csv, dicomweb=dicomweb, views_csv=views_csv,
                               shard=shard, retry_failed=retry_failed, output=output_arg,
                               resume=resume)
        with exams_to_run(source, dicom) as run:
            for note in run.notes:  # never drop a folder of the root without a word
                log.warning("%s", note)
            if run.shard is not None:
                log.info("shard %s: %d of %d exam(s)", run.shard,
                         len(run.planned) + run.already_done, run.listed)
            if run.already_done:
                log.info("resuming: %d study(ies) already done, not retrieved",
                         run.already_done)
            planned = run.planned
            # Every output target is checked before the first exam (and before loading models).
            sinks = [result_sink(output_arg, len(planned) == 1, overwrite=overwrite,
                                 resume=resume)]
            if csv_path is not None:
                sinks.append(CsvSink(csv_path, overwrite=overwrite, resume=resume))
            if image_csv is not None:
                sinks.append(ImageCsvSink(image_csv, overwrite=overwrite, resume=resume))
            if dicom_out is not None or store_back:
                sinks.append(DicomSrSink(
                    dicom_out, store=run.server.store if store_back and run.server else None,
                    headers_for=run.headers_for, uid_root=uid_root, overwrite=overwrite,
                    resume=resume, heatmaps=dicom_heatmaps))
            outputs = Outputs.open(sinks, planned)
            heat = picture_writers(save_heatmaps, preview, planned, overwrite=overwrite,
                                   resume=resume)
            log_file = (ProgressLog(progress_json, len(planned), already_done=run.already_done)
                        if progress_json is not None else None)
            locate = weights_locator(weights_dir, parse_weight_overrides(weights),
                                     progress=not quiet)
            options = RunOptions(config=config, flip_mode=horizontal_flip, dicom=dicom,
                                 device=device, devices=tuple(devices.split(",")) if devices
                                 else (), precision=Precision(precision), threads=threads,
                                 prepare_workers=prepare_workers, site=site_file)
            request = ModelRequest(family=family_of(model), kind=model, variants=chosen,
                                   locate=locate)
            with _stops(), _rendering(len(planned), quiet, log_file) as on_outcome:
                report = predict_many(planned, request, options, outputs, heatmaps=heat,
                                      on_outcome=on_outcome)
            if log_file is not None:
                log_file.close(report.stages, report.elapsed_s, utilisation=report.utilisation)
        report.already_done += run.already_done
        if not quiet and report.outcomes:  # the table for one exam too
            _summary(report)
            say(throughput_line(report))
        if report.exit_code:
            raise typer.Exit(report.exit_code)

    @app.command("heatmaps")
    @handle_errors
    def heatmaps(
        path: Path = typer.Argument(..., help="An exam folder, or a root folder of exam folders."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder for the heatmaps."),
        weights_dir: Path | None = typer.Option(
            None, "--weights-dir", help="Folder holding the weight files under their official "
            "names (default: the cache, downloaded on first use)."),
        weights: str | None = typer.Option(None, "--weights", help=WEIGHTS_HELP),
        seed: int = typer.Option(0, "--seed", help="Seed of the heatmap stride lists (Python "
                                 "random), as in predict."),
        rng_stream: RngStreamOption = RngMode.EXAM,
        horizontal_flip: FlipOption = FlipMode.AUTO,
        device: DeviceOption = "auto",
        pipeline_config: Path | None = typer.Option(
            None, "--pipeline-config", help="YAML overriding pipeline sizes (advanced; the "
            "paper's by default). Use the sizes the heatmaps' models were trained at."),
        precision: PrecisionOption = Precision.FP32,
        threads: ThreadsOption = 0,
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Replace heatmaps already in the folder."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr."),
    ) -> None:
        """Write benign/malignant heatmaps per view: arrays, PNG overlays and a JSON index."""
        tune_allocator()
        configure_threads(threads)
        config = load_pipeline_config(pipeline_config, seed=seed, rng_mode=rng_stream)
        config = with_trained_sizes(config, pipeline_config, weights_dir,
                                    parse_weight_overrides(weights))
        planned = _planned(discover_exams(path), path)
        heat = HeatmapFolders(output, "-o", overwrite=overwrite, resume=False)
        heat.plan(planned)
        locate = weights_locator(weights_dir, parse_weight_overrides(weights), progress=not quiet)
        options = RunOptions(config=config, flip_mode=horizontal_flip, device=device,
                             precision=Precision(precision))

        with _rendering(len(planned), quiet) as progress_of:  # lines with an ETA, as predict

            def on_outcome(planned_exam: PlannedExam, outcome: ExamOutcome) -> None:
                progress_of(planned_exam, outcome)  # also reports a failure
                if outcome.failure is None and not quiet:
                    say(f"{printable(outcome.exam.exam_id)}: heatmaps written to "
                        f"{printable(str(heat.folder(planned_exam)))}")

            report = export_many(planned, ModelRequest(kind=ModelKind.VIEW_WISE, locate=locate),
                                 options, heat, on_outcome=on_outcome)
        if report.exit_code:
            raise typer.Exit(report.exit_code)


def _sr_uid_root(path: str | None, dicom_out: Path | None, store_back: bool) -> str | None:
    """Check the SR options; the UID root for new SR objects when any are written."""
    if store_back and not (path and is_dicomweb_path(path)):
        raise ConfigError("--store-back sends the SR to the DICOMweb server of the "
                          "studies; it needs a dicomweb+http(s):// address as PATH",
                          hint="for other input, write the SR files with --dicom-out DIR")
    if dicom_out is None and not store_back:
        return None
    from ..outputs.dicom_sr import uid_root_from_environment  # highdicom: only now

    return uid_root_from_environment()


def _planned(exams: Any, path: Path) -> list[PlannedExam]:
    planned, renamed = plan_exams(exams, path)
    for note in renamed:
        log.warning("%s", note)
    return planned


@contextmanager
def _stops() -> Iterator[None]:
    """A run that stopped early: say what was kept and how to go on."""
    try:
        yield
    except PredictInterrupted as stop:
        for problem in stop.problems:
            report_error(problem)
        say(f"interrupted after {stop.written} of {stop.total} exam(s); "
            f"{stop.written} record(s) kept in {stop.where}")
        if stop.resumable:
            say("  to finish, run the same command again with --resume")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except OutputsFailed as failed:
        for problem in failed.problems:
            report_error(problem)
        raise
