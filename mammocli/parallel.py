"""Many exams on several devices: one worker process per device (`predict --devices`), each
with its own copy of the models, exams handed to whichever worker is free, outcomes returned in
the input order.

Every exam draws from its own generators (the default `--rng-stream exam`), so which worker runs
it changes no number; the authors' single stream (`run`) is inherently sequential and refused.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.queues import Queue as ProcessQueue
from pathlib import Path

from .batch import ExamOutcome, exam_failure
from .config import FlipMode, PipelineConfig, RngMode
from .errors import ConfigError
from .io.dicom_options import DicomOptions
from .io.exam import ExamSource
from .pipeline import ExamOutput, ModelKind, Models, Predictor
from .precision import Precision
from .randomness import ExamRandomness
from .runtime import configure_threads, select_device, tune_allocator


@dataclass(frozen=True)
class PredictorSpec:
    """Everything a worker needs to build its own `Predictor` (picklable: plain values and
    the local paths of weight files the parent already downloaded and verified)."""

    kind: ModelKind
    variants: tuple[str, ...]
    weights: dict[str, Path]
    config: PipelineConfig
    precision: Precision = Precision.FP32
    flip_mode: FlipMode = FlipMode.AUTO
    need_heatmaps: bool = False
    dicom: DicomOptions | None = None

    @classmethod
    def resolve(cls, kind: ModelKind, variants: tuple[str, ...], locate: Callable[[str], Path],
                config: PipelineConfig, **options: object) -> PredictorSpec:
        need_heatmaps = bool(options.get("need_heatmaps", False))
        names = Models.weight_files(kind, variants, patch_classifier=need_heatmaps)
        return cls(kind, variants, {name: locate(name) for name in names}, config,
                   **options)  # type: ignore[arg-type]

    def build(self, device: str) -> Predictor:
        models = Models.load(self.kind, self.variants, self.weights.__getitem__,
                             select_device(device), self.config,
                             patch_classifier=self.need_heatmaps, precision=self.precision)
        return Predictor(models, self.config, flip_mode=self.flip_mode,
                         need_heatmaps=self.need_heatmaps, dicom=self.dicom)


def parse_devices(text: str) -> list[str]:
    """`cuda:0,cuda:1`, `cpu,cpu`, or `cuda` / `cuda:all` for every visible GPU."""
    devices = [d.strip().lower() for d in text.split(",") if d.strip()]
    if devices in (["cuda"], ["cuda:all"]):
        import torch

        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if not devices:
        raise ConfigError("--devices needs at least one device (e.g. cuda:0,cuda:1 or cpu,cpu)")
    for device in devices:
        select_device(device)  # a clear error now for a missing device, not in a worker
    return devices


def threads_per_worker(workers: int, requested: int = 0) -> int:
    """Torch threads for each worker: as asked, else the CPUs this process may use shared out."""
    if requested > 0:
        return requested
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // workers)


def run_exams_on_devices(exams: Sequence[ExamSource], spec: PredictorSpec,
                         devices: Sequence[str], threads: int = 0) -> Iterator[ExamOutcome]:
    """Yield one outcome per exam, in the order given."""
    if spec.config.rng_mode is RngMode.RUN:
        raise ConfigError("--devices runs exams in parallel, which the single random stream "
                          "of --rng-stream run cannot do", hint="use --rng-stream exam")
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    free_devices: ProcessQueue[str] = context.Queue()
    for device in devices:
        free_devices.put(device)
    per_worker = threads_per_worker(len(devices), threads)
    with ProcessPoolExecutor(max_workers=len(devices), mp_context=context,
                             initializer=_start_worker,
                             initargs=(spec, free_devices, per_worker)) as pool:
        futures: list[Future[ExamOutcome]] = [pool.submit(_predict, exam) for exam in exams]
        try:
            for future in futures:
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


_worker_predictor: Predictor | None = None


def _start_worker(spec: PredictorSpec, free_devices: ProcessQueue[str], threads: int) -> None:
    global _worker_predictor
    tune_allocator()
    configure_threads(threads)
    _worker_predictor = spec.build(free_devices.get(timeout=60))


def _predict(exam: ExamSource) -> ExamOutcome:
    assert _worker_predictor is not None, "worker not initialised"
    predictor = _worker_predictor
    try:
        output = predictor.run(exam, ExamRandomness(predictor.config.seed))
        if not predictor.need_heatmaps:  # the parent needs only the result: pickle less
            output = ExamOutput(output.result, {}, {}, {})
        return ExamOutcome(exam, output=output)
    except Exception as exc:  # noqa: BLE001 - one exam's failure must not stop the batch
        return ExamOutcome(exam, failure=exam_failure(exam, exc))
