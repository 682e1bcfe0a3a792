"""Running many exams: one bad exam never stops the others, and the next exams are read and
cropped in the background while the current one computes."""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

from ..errors import MammocliError
from ..io.exam import ExamSource
from ..outputs.schema import ExamFailure
from ..preprocess.prepare import PreparedImage
from ..reporting import log, stage
from ..views import View
from .predictor import ExamOutput, Predictor
from .randomness import RunRandomness

Prepared = dict[View, list[PreparedImage]]


@dataclass(frozen=True)
class ExamOutcome:
    exam: ExamSource
    output: ExamOutput | None = None
    failure: ExamFailure | None = None
    skipped: str | None = None  # not computed, and why (e.g. another run is computing it)


def exam_failure(exam: ExamSource, exc: BaseException) -> ExamFailure:
    if isinstance(exc, MammocliError):
        return ExamFailure(exam_id=exam.exam_id, error=exc.message, hint=exc.hint,
                           exit_code=exc.exit_code)
    if isinstance(exc, BrokenExecutor):
        return ExamFailure(exam_id=exam.exam_id,
                           error="the process preparing this exam died (out of memory, or a "
                           "crash decoding an image of this or another exam in preparation)",
                           hint="run the exam again, alone or with --prepare-workers 0",
                           exit_code=3)
    # A bug, not bad input: keep the traceback for the report, go on with the other exams.
    log.error("unexpected error in exam %s:\n%s", exam.exam_id,
              "".join(traceback.format_exception(exc)))
    return ExamFailure(exam_id=exam.exam_id, error=f"internal error: {type(exc).__name__}",
                       hint="please report this with MAMMOCLI_DEBUG=1 output", exit_code=1)


def run_exams(exams: Sequence[ExamSource], predictor: Predictor,
              on_start: Callable[[ExamSource], None] | None = None,
              prepare_workers: int = 0,
              claim: Callable[[ExamSource], str | None] | None = None) -> Iterator[ExamOutcome]:
    """Yield one outcome per exam, in order. The next exams are read and cropped ahead of the
    computation: in one thread by default, or in `prepare_workers` processes (cropping holds
    the GIL; a GPU can consume exams faster than one CPU core prepares them).

    `claim`, called just before an exam is computed, may return a reason not to compute it
    (another run into the same output has it); the outcome then carries only that reason."""
    randomness = RunRandomness(predictor.config.seed, predictor.config.rng_mode)
    ahead = max(prepare_workers, 1)  # exams in preparation at once (bounds the memory held)
    with ExitStack() as pools:
        submit = _preparation(predictor, prepare_workers, pools)
        pending: deque[Future[tuple[Prepared, float]]] = deque()
        submitted = 0
        for exam in exams:
            while submitted < len(exams) and len(pending) <= ahead:
                pending.append(submit(exams[submitted]))
                submitted += 1
            future = pending.popleft()
            if on_start:
                on_start(exam)
            rng = randomness.for_exam()
            try:
                reason = claim(exam) if claim else None
                if reason is not None:
                    future.cancel()
                    yield ExamOutcome(exam, skipped=reason)
                    continue
                stage("prepare")  # waits for the exam's reading and cropping, if not done
                prepared, prepare_s = future.result()
                yield ExamOutcome(exam, output=predictor.run(exam, rng, prepared, prepare_s))
            except KeyboardInterrupt:
                for waiting in pending:
                    waiting.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - one exam's failure must not stop the batch
                yield ExamOutcome(exam, failure=exam_failure(exam, exc))


def _timed(prepare: Callable[[ExamSource], Prepared], exam: ExamSource) -> tuple[Prepared, float]:
    """Stages 1-2 and their seconds (module level: it runs in preparation processes too)."""
    started = time.perf_counter()
    return prepare(exam), time.perf_counter() - started


def _preparation(predictor: Predictor, workers: int,
                 pools: ExitStack) -> Callable[[ExamSource], Future[tuple[Prepared, float]]]:
    """A submit function for stages 1-2: one thread, or `workers` processes. Should a worker
    process die (its exam then fails alone), the remaining exams go to a thread."""
    thread = pools.enter_context(ThreadPoolExecutor(max_workers=1,
                                                    thread_name_prefix="prepare"))
    if workers <= 1:
        return lambda exam: thread.submit(_timed, predictor.prepare, exam)
    processes = pools.enter_context(ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn")))
    broken = False

    def submit(exam: ExamSource) -> Future[tuple[Prepared, float]]:
        nonlocal broken
        if not broken:
            try:
                return processes.submit(_timed, predictor.preparer, exam)
            except BrokenExecutor:
                broken = True
                log.warning("a preparation process died; preparing the remaining exams in "
                            "this process")
        return thread.submit(_timed, predictor.prepare, exam)

    return submit
