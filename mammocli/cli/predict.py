"""`mammocli predict` and `mammocli heatmaps`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table
from rich.text import Text

from ..config import FlipMode, PipelineConfig, RngMode
from ..console import log, progress, stderr
from ..errors import EXIT_INTERRUPTED, ConfigError, InputError, OutputError
from ..inference.batch import ExamOutcome, run_exams
from ..inference.devices import configure_threads, select_device, tune_allocator
from ..inference.parallel import PredictorSpec, parse_devices, run_exams_on_devices
from ..inference.precision import Precision
from ..inference.predictor import ModelKind, Models, Predictor
from ..io.dicom.options import DEFAULT_MAX_PIXELS, DicomOptions, GroupBy, VoiMode
from ..io.discover import discover, discover_exams, read_views_csv
from ..outputs.schema import VARIANT_IMAGE_AND_HEATMAPS, VARIANT_IMAGE_ONLY, printable
from ..outputs.sinks import (
    CsvSink,
    HeatmapFolders,
    Outputs,
    PlannedExam,
    StdoutSink,
    plan_exams,
    result_sink,
)
from ..weights.overrides import WEIGHTS_HELP, parse_weight_overrides, weights_locator
from .common import handle_errors, report_error

_VARIANT_NAMES = {
    "image-only": VARIANT_IMAGE_ONLY,
    "image_only": VARIANT_IMAGE_ONLY,
    "image-and-heatmaps": VARIANT_IMAGE_AND_HEATMAPS,
    "image_and_heatmaps": VARIANT_IMAGE_AND_HEATMAPS,
}


def parse_variants(text: str) -> tuple[str, ...]:
    out = []
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part not in _VARIANT_NAMES:
            raise ConfigError(f"unknown variant {part!r}; use image-only and/or image-and-heatmaps")
        out.append(_VARIANT_NAMES[part])
    if not out:
        raise ConfigError("--variants needs at least one variant")
    return tuple(dict.fromkeys(out))


def load_pipeline_config(path: Path | None, **overrides: object) -> PipelineConfig:
    """Defaults are the paper's; a YAML file may change any field (e.g. smaller windows)."""
    values: dict[str, object] = {}
    if path is not None:
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the pipeline config ({exc})") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: expected a mapping of pipeline settings")
        known = {f.name for f in fields(PipelineConfig)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
        for key, value in doc.items():
            values[key] = tuple(value) if isinstance(value, list) else value
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "rng_mode" in values:
        values["rng_mode"] = RngMode(values["rng_mode"])
    config = PipelineConfig(**values)  # type: ignore[arg-type]
    if config.tta < 0:
        raise ConfigError("--tta must be 0 (no augmentation) or a positive number of draws")
    return config


def deliver_outcomes(todo: list[PlannedExam], exam_outcomes: Iterator[ExamOutcome],
                     outputs: Outputs, heat: HeatmapFolders | None,
                     quiet: bool) -> list[ExamOutcome]:
    """Write each outcome as its exam finishes. On an interrupt or an output that cannot be
    written, stop, keep what was written, and say where it is and how to go on."""
    outcomes: list[ExamOutcome] = []
    try:
        with progress(not quiet) as bar:
            task = bar.add_task("exams", total=len(todo)) if bar else None
            for planned, outcome in zip(todo, exam_outcomes, strict=True):
                if bar is not None:
                    bar.advance(task)
                if outcome.skipped is not None:
                    log.warning("%s: skipped, %s", printable(planned.exam.exam_id),
                                outcome.skipped)
                    continue
                outcomes.append(outcome)
                if outcome.failure is not None:
                    failure = outcome.failure
                    prefix = f"{planned.exam.exam_id}: "
                    report_error(InputError(failure.error if failure.error.startswith(prefix)
                                            else prefix + failure.error, failure.hint))
                    outputs.write(planned, failure)
                    continue
                out = outcome.output
                assert out is not None and out.result is not None
                if heat is not None:
                    heat.write(planned, out)
                outputs.write(planned, out.result)
    except KeyboardInterrupt:
        _close(outputs)
        stderr.print(Text(f"interrupted after {outputs.written} of {len(todo)} exam(s); "
                          f"{outputs.written} record(s) kept in {outputs.where()}"))
        if not isinstance(outputs.primary, StdoutSink):
            stderr.print(Text("  to finish, run the same command again with --resume"))
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except OutputError as exc:
        _close(outputs)
        raise OutputError(f"{exc.message}; the run stopped after {outputs.written} of "
                          f"{len(todo)} exam(s), whose records were kept in {outputs.where()}",
                          exc.hint) from None
    finally:
        close = getattr(exam_outcomes, "close", None)
        if close is not None:
            close()  # stops preparation pools and device workers now, not at garbage collection
    _close(outputs, raise_first=True)
    return outcomes


def _close(outputs: Outputs, raise_first: bool = False) -> None:
    problems = outputs.close()
    for problem in problems[1:] if raise_first else problems:
        report_error(problem)
    if raise_first and problems:
        raise problems[0]


def _summary(outcomes: list[ExamOutcome]) -> None:
    table = Table(title="mammocli predict", show_lines=False)
    for col in ("exam", "status", "L malignant", "R malignant", "seconds / error"):
        table.add_column(col)
    for o in outcomes:  # user-supplied strings as Text: never read as console markup
        if o.failure is not None:
            table.add_row(Text(printable(o.exam.exam_id)), Text("failed", style="red"), "", "",
                          Text(printable(o.failure.error)))
        elif o.output is not None and o.output.result is not None:
            r = o.output.result
            table.add_row(Text(printable(r.exam_id)), "ok", f"{r.primary.left.malignant:.4f}",
                          f"{r.primary.right.malignant:.4f}", f"{r.duration_s:.1f}")
    stderr.print(table)


# Options shared by `predict` and `heatmaps`.
PrecisionOption = Annotated[Precision, typer.Option(
    "--precision",
    help="fp32: exact (default). bf16: networks in bfloat16, faster on CPUs with AVX512-BF16/AMX "
    "and on GPUs, outputs differ slightly (opt-in). tf32: CUDA only, TensorFloat-32 matmuls "
    "(opt-in, approximate).")]
ThreadsOption = Annotated[int, typer.Option(
    "--threads", help="CPU threads for torch (default: the CPUs this process may use).")]


def register(app: typer.Typer) -> None:
    @app.command("predict")
    @handle_errors
    def predict(
        path: Path = typer.Argument(..., help="An exam folder, or a root folder of exam folders."),
        output_arg: str | None = typer.Option(
            None, "--output", "-o",
            help="Write results here instead of stdout: a file (JSON, or JSON Lines for several "
            "exams), or a folder (ending in /) for one <exam_id>.json per exam."),
        csv_path: Path | None = typer.Option(
            None, "--csv", help="Also write the primary variant as the authors' 4-column CSV."),
        save_heatmaps: Path | None = typer.Option(
            None, "--save-heatmaps", help="Also write heatmaps (arrays + PNG overlays) here."),
        weights_dir: Path | None = typer.Option(
            None, "--weights-dir", help="Folder holding the weight files under their official "
            "names (default: the cache, downloaded on first use)."),
        weights: str | None = typer.Option(None, "--weights", help=WEIGHTS_HELP),
        model: ModelKind = typer.Option(ModelKind.VIEW_WISE, "--model",
                                        help="view-wise (the paper's) or image-wise."),
        variants: str = typer.Option("image-only,image-and-heatmaps", "--variants",
                                     help="Comma-separated: image-only, image-and-heatmaps."),
        tta: int = typer.Option(10, "--tta", help="Test-time augmentation draws; 0 = none."),
        seed: int = typer.Option(0, "--seed", help="Seed of both random generators."),
        rng_stream: RngMode = typer.Option(
            RngMode.EXAM, "--rng-stream",
            help="exam: every exam starts from the seed; run: one stream across exams, as the "
            "authors' scripts (to reproduce their outputs)."),
        horizontal_flip: FlipMode = typer.Option(
            FlipMode.AUTO, "--horizontal-flip",
            help="auto: decide per image from the tissue side; no/yes: the authors' flag."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
        devices: str | None = typer.Option(
            None, "--devices", help="Several devices, one worker process each, exams shared "
            "out (e.g. cuda:0,cuda:1; cuda = every GPU; cpu,cpu splits the CPU threads)."),
        prepare_workers: int = typer.Option(
            0, "--prepare-workers", min=0, help="Read and crop upcoming exams in N processes "
            "(default: one thread; per device with --devices). Helps a GPU, which computes "
            "faster than one core crops."),
        pipeline_config: Path | None = typer.Option(
            None, "--pipeline-config", help="YAML overriding pipeline sizes (advanced)."),
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
        precision: PrecisionOption = Precision.FP32,
        threads: ThreadsOption = 0,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr."),
    ) -> None:
        """Predict benign and malignant probabilities per breast. Research use only."""
        tune_allocator()
        configure_threads(threads)
        config = load_pipeline_config(pipeline_config, tta=tta, seed=seed, rng_mode=rng_stream)
        chosen = parse_variants(variants)
        dicom = DicomOptions(voi=voi, allow_synthetic=allow_synthetic,
                             allow_for_processing=allow_for_processing,
                             allow_secondary_capture=allow_secondary_capture,
                             one_per_view=one_per_view, include_uids=include_uids,
                             group_by=group_by, max_pixels=max_pixels)
        found = discover(path, options=dicom,
                         views=read_views_csv(views_csv) if views_csv else None)
        for left_out in found.ignored:  # never drop a folder of the root without a word
            log.warning("%s: left out: %s", left_out.relative, left_out.reason)
        planned, renamed = plan_exams(found.exams, path)
        for note in renamed:
            log.warning("%s", note)
        # Every output target is checked before the first exam (and before loading models).
        sinks = [result_sink(output_arg, len(planned) == 1, overwrite=overwrite, resume=resume)]
        if csv_path is not None:
            sinks.append(CsvSink(csv_path, overwrite=overwrite, resume=resume))
        outputs = Outputs.open(sinks, planned)
        heat = None
        if save_heatmaps is not None:
            heat = HeatmapFolders(save_heatmaps, "--save-heatmaps", overwrite=overwrite,
                                  resume=resume)
            heat.plan(planned)
        todo = [p for p in planned if outputs.done(p) is None]
        if len(todo) < len(planned):
            log.info("resuming: %d exam(s) already done", len(planned) - len(todo))
        locate = weights_locator(weights_dir, parse_weight_overrides(weights), progress=not quiet)
        exam_list = [p.exam for p in todo]
        if devices:
            if device != "auto":
                raise ConfigError("use either --device or --devices, not both")
            device_list = parse_devices(devices)
            log.info("devices: %s (one worker process each)", ", ".join(device_list))
            spec = PredictorSpec.resolve(model, chosen, locate, config,
                                         precision=Precision(precision),
                                         flip_mode=horizontal_flip,
                                         need_heatmaps=save_heatmaps is not None, dicom=dicom)
            exam_outcomes = run_exams_on_devices(exam_list, spec, device_list, threads,
                                                 prepare_workers)
        else:
            torch_device = select_device(device)
            log.info("device: %s", torch_device)
            models = Models.load(model, chosen, locate, torch_device, config,
                                 patch_classifier=save_heatmaps is not None, precision=precision)
            predictor = Predictor(models, config, flip_mode=horizontal_flip,
                                  need_heatmaps=save_heatmaps is not None, dicom=dicom)
            by_exam = {id(p.exam): p for p in todo}
            exam_outcomes = run_exams(exam_list, predictor, prepare_workers=prepare_workers,
                                      claim=lambda e: outputs.claim(by_exam[id(e)]))

        outcomes = deliver_outcomes(todo, exam_outcomes, outputs, heat, quiet)
        if len(outcomes) > 1 and not quiet:
            _summary(outcomes)
        failures = [o.failure for o in outcomes if o.failure is not None]
        if failures:
            raise typer.Exit(max(f.exit_code for f in failures))

    @app.command("heatmaps")
    @handle_errors
    def heatmaps(
        path: Path = typer.Argument(..., help="An exam folder, or a root folder of exam folders."),
        output: Path = typer.Option(..., "--output", "-o", help="Folder for the heatmaps."),
        weights_dir: Path | None = typer.Option(None, "--weights-dir"),
        weights: str | None = typer.Option(None, "--weights", help=WEIGHTS_HELP),
        seed: int = typer.Option(0, "--seed"),
        rng_stream: RngMode = typer.Option(RngMode.EXAM, "--rng-stream"),
        horizontal_flip: FlipMode = typer.Option(FlipMode.AUTO, "--horizontal-flip"),
        device: str = typer.Option("auto", "--device"),
        pipeline_config: Path | None = typer.Option(None, "--pipeline-config"),
        precision: PrecisionOption = Precision.FP32,
        threads: ThreadsOption = 0,
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Replace heatmaps already in the folder."),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Write benign/malignant heatmaps per view: arrays, PNG overlays and a JSON index."""
        tune_allocator()
        configure_threads(threads)
        config = load_pipeline_config(pipeline_config, seed=seed, rng_mode=rng_stream)
        planned, renamed = plan_exams(discover_exams(path), path)
        for note in renamed:
            log.warning("%s", note)
        heat = HeatmapFolders(output, "-o", overwrite=overwrite, resume=False)
        heat.plan(planned)
        locate = weights_locator(weights_dir, parse_weight_overrides(weights), progress=not quiet)
        models = Models.load(ModelKind.VIEW_WISE, (), locate,
                             select_device(device), config, patch_classifier=True,
                             precision=precision)
        predictor = Predictor(models, config, flip_mode=horizontal_flip, need_heatmaps=True)
        failures = []
        exams = [p.exam for p in planned]
        for planned_exam, outcome in zip(planned, run_exams(exams, predictor), strict=True):
            if outcome.failure is not None:
                failures.append(outcome.failure)
                report_error(InputError(outcome.failure.error, outcome.failure.hint))
                continue
            assert outcome.output is not None
            folder = heat.write(planned_exam, outcome.output)
            if not quiet:
                stderr.print(Text(f"{printable(outcome.exam.exam_id)}: heatmaps written to "
                                  f"{printable(str(folder))}"))
        if failures:
            raise typer.Exit(max(f.exit_code for f in failures))
