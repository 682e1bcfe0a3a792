"""Running many exams: one bad exam never stops the others, and the next exam is read and
cropped in a background thread while the current one computes."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .console import log
from .errors import MammocliError
from .io.exam import ExamSource
from .pipeline import ExamOutput, Predictor
from .prepare import PreparedImage
from .randomness import RunRandomness
from .results import ExamFailure
from .views import View

Prepared = dict[View, list[PreparedImage]]


@dataclass(frozen=True)
class ExamOutcome:
    exam: ExamSource
    output: ExamOutput | None = None
    failure: ExamFailure | None = None


def exam_failure(exam: ExamSource, exc: BaseException) -> ExamFailure:
    if isinstance(exc, MammocliError):
        return ExamFailure(exam_id=exam.exam_id, error=exc.message, hint=exc.hint,
                           exit_code=exc.exit_code)
    # A bug, not bad input: keep the traceback for the report, go on with the other exams.
    log.error("unexpected error in exam %s:\n%s", exam.exam_id,
              "".join(traceback.format_exception(exc)))
    return ExamFailure(exam_id=exam.exam_id, error=f"internal error: {type(exc).__name__}",
                       hint="please report this with MAMMOCLI_DEBUG=1 output", exit_code=1)


def run_exams(exams: Sequence[ExamSource], predictor: Predictor,
              on_start: Callable[[ExamSource], None] | None = None) -> Iterator[ExamOutcome]:
    """Yield one outcome per exam, in order."""
    randomness = RunRandomness(predictor.config.seed, predictor.config.rng_mode)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare") as pool:
        pending: Future[Prepared] | None = None
        for i, exam in enumerate(exams):
            future = pending if pending is not None else pool.submit(predictor.prepare, exam)
            pending = pool.submit(predictor.prepare, exams[i + 1]) if i + 1 < len(exams) \
                else None
            if on_start:
                on_start(exam)
            rng = randomness.for_exam()
            try:
                prepared = future.result()
                yield ExamOutcome(exam, output=predictor.run(exam, rng, prepared))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - one exam's failure must not stop the batch
                yield ExamOutcome(exam, failure=exam_failure(exam, exc))
