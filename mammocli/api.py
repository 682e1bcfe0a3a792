"""The library entry points for predictions: `predict` for Python users, `predict_many` and
`export_many` behind `mammocli predict` and `mammocli heatmaps`.

Silent and typed: progress and per-exam messages go to the caller's `on_outcome`; the only
logging is the `mammocli` logger's info lines (device, resume) that the CLI shows on stderr.
The output sinks (`outputs.sinks`) own the overwrite, resume and failure-record rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from .analysis.site import SiteFile
from .config import FlipMode, PipelineConfig, RngMode
from .errors import ConfigError, OutputError
from .families import get_family
from .hashing import sha256_file
from .inference.batch import ExamOutcome, run_exams
from .inference.devices import select_device
from .inference.family import Locate
from .inference.utilisation import Utilisation, UtilisationMeter
from .io.dicom.options import DicomOptions
from .io.discover import discover
from .outputs.schema import ExamFailure, PredictionResult
from .outputs.sinks import (
    ExamWriter,
    HeatmapFolders,
    Outputs,
    PlannedExam,
    Record,
    Sink,
    StdoutSink,
    plan_exams,
)
from .parallel import PredictorSpec, parse_devices, run_exams_on_devices
from .reporting import log
from .vocabulary import Export, Family, ModelKind, Precision, Variant, family_of, parse_variant
from .weights.card import with_trained_sizes
from .weights.overrides import weights_locator

__all__ = [
    "ExamOutcome", "ModelRequest", "OutputsFailed", "PredictInterrupted", "RunOptions", "RunReport",
    "export_many", "load_pipeline_config", "predict", "predict_many",
]

OnOutcome = Callable[[PlannedExam, ExamOutcome], None]
STAGES = ("prepare", "heatmaps", "classify", "write")


@dataclass(frozen=True)
class ModelRequest:
    """Which networks: a family, one of its models (`kind`) and variants (default: its first
    model, every variant), and where their weight files come from (default: the verified cache,
    downloaded on first use)."""

    family: Family = Family.DMV_CNN
    kind: ModelKind | None = None
    variants: tuple[Variant, ...] | None = None
    locate: Locate | None = None

    def resolved(self) -> tuple[ModelKind, tuple[Variant, ...], Locate]:
        family = get_family(self.family)
        kind = self.kind or family.kinds[0]
        if kind not in family.kinds:
            raise ConfigError(f"the {family.name.value} family has no {kind.value} model",
                              hint=f"choose from {', '.join(k.value for k in family.kinds)}")
        variants = family.variants if self.variants is None else self.variants
        unknown = [v.value for v in variants if v not in family.variants]
        if unknown:
            raise ConfigError(f"unknown variant(s) {', '.join(unknown)} for "
                              f"{family.name.value}",
                              hint=f"choose from {', '.join(v.value for v in family.variants)}")
        return kind, tuple(variants), self.locate or weights_locator(None, {}, progress=False)


@dataclass(frozen=True)
class RunOptions:
    """How to run: sizes and seed (`config`), orientation, DICOM reading, device(s)."""

    config: PipelineConfig = field(default_factory=PipelineConfig)
    flip_mode: FlipMode = FlipMode.AUTO
    dicom: DicomOptions = field(default_factory=DicomOptions)
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    devices: tuple[str, ...] = ()  # several, one worker process each ("cuda" = every GPU)
    precision: Precision = Precision.FP32
    threads: int = 0  # per --devices worker; 0: the CPUs shared out
    prepare_workers: int = 0
    exports: frozenset[Export] = frozenset()  # e.g. heatmaps, for a HeatmapFolders writer
    # A site file (`predict --site`): checked against the weights before the first exam, then
    # every result gets its calibrated probabilities and operating-point flags.
    site: SiteFile | None = None


@dataclass
class RunReport:
    """What a run did: the outcomes computed here (results and failures, input order), and the
    exams left out (done by an earlier run, or being computed by another run)."""

    outcomes: list[ExamOutcome] = field(default_factory=list)
    already_done: int = 0
    skipped: list[tuple[PlannedExam, str]] = field(default_factory=list)
    written: int = 0
    elapsed_s: float = 0.0  # wall time of the run, model loading included
    # Seconds per stage, summed over exams: prepare (read, decode, crop), heatmaps, classify
    # (the family's networks) and write (every output of an exam).
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    # What the run used of the CPUs and, on CUDA, of the GPUs (see inference.utilisation)
    utilisation: Utilisation | None = None

    @property
    def exams_per_s(self) -> float | None:
        """Exams computed here per second of the run (None before any finished)."""
        return len(self.outcomes) / self.elapsed_s if self.outcomes and self.elapsed_s else None

    @property
    def failures(self) -> list[ExamFailure]:
        return [o.failure for o in self.outcomes if o.failure is not None]

    @property
    def results(self) -> list[PredictionResult]:
        return [o.output.result for o in self.outcomes
                if o.output is not None and o.output.result is not None]

    @property
    def exit_code(self) -> int:
        """0 when every exam computed here succeeded, else the worst failure's code."""
        return max((f.exit_code for f in self.failures), default=0)


class PredictInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: every finished record was kept (`written` of `total`)."""

    def __init__(self, written: int, total: int, where: str, resumable: bool,
                 problems: list[OutputError]) -> None:
        super().__init__(f"interrupted after {written} of {total} exam(s)")
        self.written, self.total, self.where = written, total, where
        self.resumable = resumable  # the same command with --resume finishes the run
        self.problems = problems  # sinks that could not close cleanly


class OutputsFailed(OutputError):
    """An output could not be written: the run stopped, the records written so far were kept.
    `problems`: other sinks that could not close cleanly."""

    def __init__(self, message: str, hint: str | None, problems: list[OutputError]) -> None:
        super().__init__(message, hint)
        self.problems = problems


def load_pipeline_config(path: Path | None, **overrides: object) -> PipelineConfig:
    """Defaults are the paper's; a YAML file may change any field (e.g. smaller windows), and
    `overrides` that are not None win over both."""
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


def _outcomes(todo: list[PlannedExam], models: ModelRequest, options: RunOptions,
              claim: Callable[[PlannedExam], str | None] | None) -> Iterator[ExamOutcome]:
    """One outcome per exam of `todo`, in order, on one device or several."""
    kind, variants, locate = models.resolved()
    exams = [p.exam for p in todo]
    if options.devices:
        if options.device != "auto":
            raise ConfigError("use either --device or --devices, not both")
        devices = parse_devices(",".join(options.devices))
        log.info("devices: %s (one worker process each)", ", ".join(devices))
        spec = PredictorSpec.resolve(models.family, kind, variants, locate, options.config,
                                     precision=options.precision, flip_mode=options.flip_mode,
                                     exports=options.exports, dicom=options.dicom)
        _check_site(options.site, spec)
        return run_exams_on_devices(exams, spec, devices, options.threads,
                                    options.prepare_workers)
    device = select_device(options.device)
    log.info("device: %s", device)
    spec = PredictorSpec.resolve(models.family, kind, variants, locate, options.config,
                                 precision=options.precision, flip_mode=options.flip_mode,
                                 exports=options.exports, dicom=options.dicom)
    _check_site(options.site, spec)
    predictor = spec.build(device)
    by_exam = {id(p.exam): p for p in todo}
    return run_exams(exams, predictor, prepare_workers=options.prepare_workers,
                     claim=(lambda e: claim(by_exam[id(e)])) if claim else None)


def _check_site(site: SiteFile | None, spec: PredictorSpec) -> None:
    """Refuse a site file of other weights as soon as their hashes are known (located and
    verified), before any model is loaded or exam read."""
    if site is None:
        return
    site.check_model(spec.family.value, spec.kind.value,
                     {name: sha256_file(path) for name, path in spec.weights.items()})
    if site.model is not None and site.model.variant not in {v.value for v in spec.variants}:
        site.check_model(spec.family.value, spec.kind.value, site.model.fingerprint(),
                         ",".join(v.value for v in spec.variants))


def predict_many(exams: Sequence[PlannedExam], models: ModelRequest, options: RunOptions,
                 sink: Outputs, *, heatmaps: ExamWriter | None = None,
                 on_outcome: OnOutcome | None = None) -> RunReport:
    """Predict every exam not already done in `sink` (see `Outputs.done`), writing each record
    (result or failure) to `sink`, and pictures to `heatmaps` (heatmap folders, previews: an
    `ExamWriter`), as its exam finishes.

    `exams` come from `outputs.sinks.plan_exams`; `sink` from `Outputs.open`, which checked
    every target before this call. One exam's failure never stops the others. On Ctrl-C or an
    output that cannot be written the run stops, closes the sinks (they keep every finished
    record) and raises `PredictInterrupted` / `OutputsFailed`."""
    started = time.perf_counter()
    meter = UtilisationMeter()
    if heatmaps is not None:
        options = _with_export(options, *heatmaps.exports(models.family))
    if _sinks_want_heatmaps(sink, models):
        options = _with_export(options, Export.HEATMAPS)
    todo = [p for p in exams if sink.done(p) is None]
    report = RunReport(already_done=len(exams) - len(todo))
    if report.already_done:
        log.info("resuming: %d exam(s) already done", report.already_done)
    outcomes = _outcomes(todo, models, options, sink.claim)
    try:
        for planned, outcome in zip(todo, outcomes, strict=True):
            if outcome.skipped is not None:
                report.skipped.append((planned, outcome.skipped))
            else:
                report.outcomes.append(outcome)
                writing = time.perf_counter()
                if outcome.failure is not None:
                    sink.write(planned, outcome.failure)
                else:
                    out = outcome.output
                    assert out is not None and out.result is not None
                    for stage, seconds in out.timings.items():
                        report.stages[stage] = report.stages.get(stage, 0.0) + seconds
                    if heatmaps is not None:
                        heatmaps.write(planned, out)
                    sink.write(planned, options.site.stamp(out.result)
                               if options.site is not None else out.result, out)
                report.stages["write"] += time.perf_counter() - writing
            report.elapsed_s = time.perf_counter() - started
            if on_outcome is not None:
                on_outcome(planned, outcome)
    except KeyboardInterrupt:
        raise PredictInterrupted(sink.written, len(todo), sink.where(),
                                 not isinstance(sink.primary, StdoutSink), sink.close()) from None
    except OutputError as exc:
        failed = OutputsFailed(f"{exc.message}; the run stopped after {sink.written} of "
                               f"{len(todo)} exam(s), whose records were kept in "
                               f"{sink.where()}", exc.hint, sink.close())
        failed.exit_code = exc.exit_code  # e.g. a PACS that stopped answering: 3
        raise failed from None
    finally:
        close = getattr(outcomes, "close", None)
        if close is not None:
            close()  # stops preparation pools and device workers now, not at garbage collection
    problems = sink.close()
    if problems:
        first = problems[0]
        raise OutputsFailed(first.message, first.hint, problems[1:])
    report.written = sink.written
    report.elapsed_s = time.perf_counter() - started
    report.utilisation = meter.finish(_devices(report, options), report.stages,
                                      report.elapsed_s)
    return report


def _devices(report: RunReport, options: RunOptions) -> list[str]:
    """The devices that computed the run's results (the option's when none names one)."""
    used = {r.device for r in report.results}
    if used:
        return sorted(used)
    if options.devices or not report.outcomes:
        return list(options.devices)
    try:  # heatmaps-only runs have no result naming the device
        return [str(select_device(options.device))]
    except Exception:
        return []


def export_many(exams: Sequence[PlannedExam], models: ModelRequest, options: RunOptions,
                folders: HeatmapFolders, *, on_outcome: OnOutcome | None = None) -> RunReport:
    """Heatmaps only (`mammocli heatmaps`): one folder per exam, no result records."""
    started = time.perf_counter()
    meter = UtilisationMeter()
    options = _with_export(options, Export.HEATMAPS)
    models = ModelRequest(models.family, models.kind, (), models.locate)
    report = RunReport()
    for planned, outcome in zip(exams, _outcomes(list(exams), models, options, None),
                                strict=True):
        report.outcomes.append(outcome)
        if outcome.output is not None:
            folders.write(planned, outcome.output)
        if on_outcome is not None:
            on_outcome(planned, outcome)
    report.elapsed_s = time.perf_counter() - started
    report.utilisation = meter.finish(_devices(report, options), report.stages,
                                      report.elapsed_s)
    return report


def _sinks_want_heatmaps(sink: Outputs, models: ModelRequest) -> bool:
    """A sink writes heatmaps (DICOM) when the run computes them anyway: asking for the export
    then costs nothing and keeps them in the outcome (also from --devices workers)."""
    wants = any(getattr(s, "wants_heatmaps", False) for s in sink.sinks)
    return wants and Variant.IMAGE_AND_HEATMAPS in models.resolved()[1]


def _with_export(options: RunOptions, *exports: Export) -> RunOptions:
    return replace(options, exports=options.exports | set(exports))


class _Collect(Sink):
    """Records kept in memory, for `predict`."""

    option = "python"
    where = "memory"

    def __init__(self) -> None:
        self.records: list[Record] = []

    def write(self, planned: PlannedExam, record: Record) -> None:
        self.records.append(record)


def predict(path: str | Path, *, family: Family | str | None = None,
            model: ModelKind | str | None = None,
            variants: Sequence[Variant | str] | None = None,
            weights_dir: str | Path | None = None, device: str = "auto",
            config: PipelineConfig | str | Path | None = None, tta: int | None = None,
            seed: int | None = None,
            flip_mode: FlipMode | str = FlipMode.AUTO, dicom: DicomOptions | None = None,
            precision: Precision | str = Precision.FP32,
            ) -> list[PredictionResult | ExamFailure]:
    """Predict every exam under `path` (one exam folder, or a root of exam folders; PNG or
    DICOM) and return one record per exam, in discovery order: a `PredictionResult`, or an
    `ExamFailure` for an exam that could not be read. `family` defaults to the family of
    `model` (e.g. "gmic"), else the DMV-CNN; GMIC's `variants` are its members
    ("gmic_1" ... "gmic_5", default all five: the ensemble). Weights come from `weights_dir` (files
    under their official names) or the verified cache (downloaded on first use). `config` is
    a `PipelineConfig` or a YAML file of pipeline sizes; default: the paper's.

    Errors that stop the whole run (bad options, no weights, no device) raise
    `mammocli.errors.MammocliError` subclasses."""
    if isinstance(config, PipelineConfig):
        config = config.with_(**{k: v for k, v in (("tta", tta), ("seed", seed))
                                 if v is not None})
        if config.tta < 0:
            raise ConfigError("tta must be 0 (no augmentation) or a positive number of draws")
    else:  # a YAML file of pipeline sizes (e.g. examples/small_pipeline.yaml), or the paper's
        config_file = Path(config) if config is not None else None
        config = load_pipeline_config(config_file, tta=tta, seed=seed)
        # A training export's model_card.json says the sizes it was trained at, as for the CLI.
        config = with_trained_sizes(config, config_file,
                                    Path(weights_dir) if weights_dir else None, {})
    try:
        chosen = None if variants is None else tuple(
            v if isinstance(v, Variant) else parse_variant(v) for v in variants)
        kind = ModelKind(model) if model is not None else None
    except ValueError:
        raise ConfigError(f"unknown model {model!r} or variant in {list(variants or [])}",
                          hint="models: view-wise, image-wise, gmic; variants: image-only, "
                          "image-and-heatmaps (DMV-CNN), gmic_1 ... gmic_5 (GMIC)") from None
    if family is None:
        family = family_of(kind) if kind is not None else Family.DMV_CNN
    dicom = dicom or DicomOptions()
    root = Path(path)
    found = discover(root, options=dicom)
    planned, _ = plan_exams(found.exams, root)
    collect = _Collect()
    outputs = Outputs.open([collect], planned)
    request = ModelRequest(
        get_family(family).name, kind, chosen,
        weights_locator(Path(weights_dir) if weights_dir else None, {}, progress=False))
    options = RunOptions(config=config, flip_mode=FlipMode(flip_mode), dicom=dicom,
                         device=device, precision=Precision(precision))
    predict_many(planned, request, options, outputs)
    return collect.records
