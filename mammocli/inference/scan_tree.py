"""`mammocli scan`: walk an archive once and write its exam list (issue 16).

The walk and the grouping are `predict`'s own discovery (`discover.discover`: the walker rules
of `walk`, one exam per study or per PNG exam folder); only the header reads are spread over a
process pool (headers only, never pixels). Exam ids are the ones `predict ROOT -o DIR/` gives
(`plan_exams`), so a list-driven run resumes a tree-walk run's folder and vice versa. Besides
discovery, a folder below the root that holds a PNG exam (L_CC.png ...) is an exam too.

Every folder with files that is no exam is reported with the reason (the first file's, and how
many files there are).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.dicom.discover import Scanned
from ..io.dicom.options import DicomOptions
from ..io.dicom.scan import DicomHeader
from ..io.discover import Discovery, discover
from ..io.exam import ExamSource, SkippedFile
from ..io.png_exam import looks_like_png_exam
from ..outputs.sinks import plan_exams

__all__ = ["ScanResult", "scan_archive"]


@dataclass(frozen=True)
class ScanResult:
    root: Path
    exams: list[ExamSource]  # ids unique, as predict ROOT names them
    not_exams: list[SkippedFile]  # folder (relative to the root, '/'-separated) and why
    files: int  # files whose headers were read
    seconds: float
    problems: list[str] = field(default_factory=list)  # exam ids that will fail (the reason is
    # recorded by predict)

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else float("inf")


class _Recorder:
    """A `map_files` that reads headers in a process pool and keeps each file's outcome."""

    def __init__(self, workers: int, chunksize: int) -> None:
        self.workers = workers
        self.chunksize = chunksize
        self.stray: list[tuple[Path, str]] = []
        self.files = 0

    def __call__(self, fn: Callable[[Path], Scanned], files: Sequence[Path]) -> Iterator[Scanned]:
        self.files += len(files)
        results: Iterable[Scanned]
        if self.workers <= 1 or len(files) < 2 * self.chunksize:
            results = map(fn, files)
            yield from self._keep(results)
            return
        with ProcessPoolExecutor(max_workers=self.workers) as pool:
            results = pool.map(fn, files, chunksize=self.chunksize)
            yield from self._keep(results)

    def _keep(self, results: Iterable[Scanned]) -> Iterator[Scanned]:
        for scanned in results:
            if not isinstance(scanned, DicomHeader):
                self.stray.append(scanned)
            yield scanned


def _within(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def _summary(reasons: list[tuple[str, str]]) -> str:
    name, reason = reasons[0]
    more = f" (and {len(reasons) - 1} more file(s))" if len(reasons) > 1 else ""
    return f"no exam: {len(reasons)} file(s) not used, e.g. {name}: {reason}{more}"


def scan_archive(root: Path, *, options: DicomOptions | None = None, workers: int | None = None,
                 chunksize: int = 64) -> ScanResult:
    """The exams under `root` and the folders that are none, reading headers with `workers`
    processes (default: the CPUs this process may use). Errors as `discover`."""
    root = Path(root)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    start = time.perf_counter()
    recorder = _Recorder(workers, chunksize)
    try:
        found = discover(root, options=options, map_files=recorder)
    except InputError as exc:
        if not recorder.files:  # not even a file: nothing to report folder by folder
            raise
        nothing: InputError | None = exc  # maybe PNG exams below the first level only
        found = Discovery([])
    else:
        nothing = None
    exams = list(found.exams)
    folders = [e.folder for e in exams]

    # Folders that hold stray files and no exam; nested PNG exam folders become exams.
    by_folder: dict[Path, list[tuple[str, str]]] = {}
    for path, reason in recorder.stray:
        if not _within(path.parent, folders):
            by_folder.setdefault(path.parent, []).append((path.name, reason))
    for folder in sorted(by_folder):
        if folder != root and not _within(folder, folders) and looks_like_png_exam(folder):
            exams.extend(discover(folder, options=options).exams)  # its problems fail alone
            folders.append(folder)
    if not exams and nothing is not None:
        raise nothing
    # discovery's reasons for the root's entries, but for those holding a nested exam
    not_exams = {s.relative: s for s in found.ignored
                 if not any(f == root / s.relative or root / s.relative in f.parents
                            for f in folders)}
    for folder, reasons in by_folder.items():
        if _within(folder, folders):
            continue
        relative = folder.relative_to(root).as_posix()
        if relative not in not_exams:
            not_exams[relative] = SkippedFile(relative, _summary(reasons))

    planned, _ = plan_exams(sorted(exams, key=lambda e: (str(e.folder), e.exam_id)), root)
    unique = [p.exam for p in planned]
    return ScanResult(
        root=root, exams=unique, not_exams=sorted(not_exams.values(), key=lambda s: s.relative),
        files=recorder.files, seconds=time.perf_counter() - start,
        problems=[e.exam_id for e in unique if e.problem is not None])
