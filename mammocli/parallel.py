"""Many exams on several devices: one worker process per device (`predict --devices`), each
with its own copy of the models and its share of the exams, outcomes returned in input order.

Every exam draws from its own generators (the default `--rng-stream exam`), so which worker runs
it changes no number; the authors' single stream (`run`) is inherently sequential and refused.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue as ProcessQueue
from pathlib import Path
from typing import TYPE_CHECKING

from .config import FlipMode, PipelineConfig, RngMode
from .errors import ConfigError
from .families import get_family
from .inference.batch import ExamOutcome, exam_failure, run_exams
from .inference.devices import available_cpus, configure_threads, select_device, tune_allocator
from .inference.family import Locate
from .inference.predictor import ExamOutput, Predictor
from .io.dicom.options import DicomOptions
from .io.exam import ExamSource
from .outputs.schema import ExamFailure
from .vocabulary import Export, Family, ModelKind, Precision, Variant

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class PredictorSpec:
    """Everything needed to build a `Predictor` on a device, in this process or in a worker
    (picklable: plain values and the local paths of weight files already downloaded and
    verified here)."""

    family: Family
    kind: ModelKind
    variants: tuple[Variant, ...]
    weights: dict[str, Path]
    config: PipelineConfig
    precision: Precision = Precision.FP32
    flip_mode: FlipMode = FlipMode.AUTO
    exports: frozenset[Export] = frozenset()
    dicom: DicomOptions | None = None

    @classmethod
    def resolve(cls, family: Family, kind: ModelKind, variants: tuple[Variant, ...],
                locate: Locate, config: PipelineConfig, *,
                precision: Precision = Precision.FP32, flip_mode: FlipMode = FlipMode.AUTO,
                exports: frozenset[Export] = frozenset(),
                dicom: DicomOptions | None = None) -> PredictorSpec:
        """The spec, with every weight file it needs located (downloaded and verified) here."""
        names = get_family(family).weight_files(kind, variants, exports)
        return cls(family, kind, variants, {name: locate(name) for name in names}, config,
                   precision, flip_mode, exports, dicom)

    def build(self, device: str | torch.device) -> Predictor:
        """Load the models on `device` (a name is checked by `select_device`)."""
        where = select_device(device) if isinstance(device, str) else device
        models = get_family(self.family).load(
            self.kind, self.variants, self.weights.__getitem__, where,
            self.config, precision=self.precision, exports=self.exports)
        return Predictor(models, self.config, flip_mode=self.flip_mode, exports=self.exports,
                         dicom=self.dicom)


def parse_devices(text: str) -> list[str]:
    """`cuda:0,cuda:1`, `cpu,cpu`, or `cuda` / `cuda:all` for every visible GPU."""
    devices = [d.strip().lower() for d in text.split(",") if d.strip()]
    if devices in (["cuda"], ["cuda:all"]):
        import torch

        select_device("cuda")  # the clear error where there is none
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if not devices:
        raise ConfigError("--devices needs at least one device (e.g. cuda:0,cuda:1 or cpu,cpu)")
    for device in devices:
        select_device(device)  # a clear error now for a missing device, not in a worker
    return devices


def threads_per_worker(workers: int, requested: int = 0) -> int:
    """Torch threads for each worker: as asked, else the CPUs this process may use shared out."""
    return requested if requested > 0 else max(1, available_cpus() // workers)


def run_exams_on_devices(exams: Sequence[ExamSource], spec: PredictorSpec,
                         devices: Sequence[str], threads: int = 0,
                         prepare_workers: int = 0) -> Iterator[ExamOutcome]:
    """Yield one outcome per exam, in the order given. Worker k runs exams k, k+n, k+2n, ...
    as one batch (`run_exams`: the next exam is read and cropped while one computes, in
    `prepare_workers` processes of its own if asked)."""
    if spec.config.rng_mode is RngMode.RUN:
        raise ConfigError("--devices runs exams in parallel, which the single random stream "
                          "of --rng-stream run cannot do", hint="use --rng-stream exam")
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    results: ProcessQueue[tuple[int, ExamOutcome]] = context.Queue()
    per_worker = threads_per_worker(len(devices), threads)
    shards = {k: list(range(k, len(exams), len(devices))) for k in range(len(devices))}
    # Not daemonic: a worker may start preparation processes of its own.
    workers: dict[int, BaseProcess] = {
        k: context.Process(target=_device_worker, name=f"mammocli-{device}",
                           args=(spec, device, per_worker, prepare_workers,
                                 [(i, exams[i]) for i in shards[k]], results))
        for k, device in enumerate(devices) if shards[k]
    }
    for worker in workers.values():
        worker.start()
    try:
        done: dict[int, ExamOutcome] = {}
        owner = {i: k for k, shard in shards.items() for i in shard}
        next_index = 0
        while next_index < len(exams):
            try:
                index, outcome = results.get(timeout=1.0)
                done[index] = outcome
            except queue.Empty:
                _fail_lost_exams(exams, workers, owner, done)
            while next_index in done:
                yield done.pop(next_index)
                next_index += 1
    finally:
        for worker in workers.values():
            if worker.is_alive():
                worker.terminate()
            worker.join()


def _fail_lost_exams(exams: Sequence[ExamSource], workers: dict[int, BaseProcess],
                     owner: dict[int, int], done: dict[int, ExamOutcome]) -> None:
    """A worker that died (killed for memory, a crash in a native library) took its
    remaining exams with it: they fail, the other workers go on."""
    dead = {k for k, w in workers.items() if w.exitcode is not None and w.exitcode != 0}
    for index, k in owner.items():
        if k in dead and index not in done:
            exam = exams[index]
            done[index] = ExamOutcome(exam, failure=ExamFailure(
                exam_id=exam.exam_id,
                error=f"the worker process for {workers[k].name.removeprefix('mammocli-')} "
                f"stopped (exit code {workers[k].exitcode}) before this exam was done",
                hint="run it again; if it recurs, without --devices",
                # As for a dead preparation process: not a bug, the other exams have results.
                exit_code=3))
    for k in dead:
        del workers[k]


# Test-only: the worker that reaches this exam id kills itself (SIGKILL, as the kernel's OOM
# killer does), so the tests can check what a real worker death leaves.
KILL_WORKER_AT_ENV = "MAMMOCLI_TEST_KILL_WORKER_AT"


def _device_worker(spec: PredictorSpec, device: str, threads: int, prepare_workers: int,
                   shard: list[tuple[int, ExamSource]],
                   results: ProcessQueue[tuple[int, ExamOutcome]]) -> None:
    tune_allocator()
    configure_threads(threads)
    exams = [exam for _, exam in shard]
    try:
        predictor = spec.build(device)
    except Exception as exc:  # noqa: BLE001 - e.g. the device is out of memory: fail its exams
        for index, exam in shard:
            results.put((index, ExamOutcome(exam, failure=exam_failure(exam, exc))))
        return
    outcomes = run_exams(exams, predictor, prepare_workers=prepare_workers)
    kill_at = os.environ.get(KILL_WORKER_AT_ENV)
    for (index, _), outcome in zip(shard, outcomes, strict=True):
        if kill_at is not None and outcome.exam.exam_id == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if outcome.output is not None and not predictor.exports:
            # The parent needs only the result: pickle less.
            outcome = ExamOutcome(outcome.exam, output=ExamOutput(
                outcome.output.result, {}, timings=outcome.output.timings))
        results.put((index, outcome))
