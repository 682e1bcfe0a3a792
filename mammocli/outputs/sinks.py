"""Where `predict` results go: stdout, one file, a folder of `<exam_id>.json`, a CSV, heatmaps.

Every sink follows one rule set, checked before the first exam: nothing is replaced without
--overwrite, --resume continues what a previous run of the same input wrote (and never takes
another input's result as done), a failed exam leaves a record, and each record is on disk (or on
stdout, flushed) as soon as its exam finishes, so an interrupt or a crash keeps every finished
result. File names come from `safe_file_stem`, never from a raw exam id.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ..errors import ConfigError, OutputError
from ..io.csv_tables import read_records
from ..io.exam import ExamSource
from ..vocabulary import PICTURE_EXPORT, Export, Family
from .files import (
    atomic_write_text,
    check_distinct,
    check_file_target,
    check_folder_target,
    umask,
    write_failed,
)
from .schema import (
    CSV_HEADER,
    IMAGE_CSV_HEADER,
    ExamFailure,
    InputRef,
    PredictionResult,
    csv_row,
    image_csv_rows,
    printable,
    rows_to_csv,
    to_json,
)

if TYPE_CHECKING:
    from ..inference.predictor import ExamOutput

Record = PredictionResult | ExamFailure

MAX_STEM_BYTES = 100  # room for ".json", a temp prefix and suffix within 255 bytes
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


def safe_file_stem(exam_id: str) -> str:
    """An exam id as a file name: no path separators, `..`, NUL or control characters, never
    hidden, at most MAX_STEM_BYTES bytes (cut names end in a short hash, so they stay distinct).
    """
    stem = _UNSAFE.sub("_", printable(exam_id)).strip()
    stem = re.sub(r"^\.+", lambda m: "_" * len(m.group()), stem) or "_"
    if len(stem.encode("utf-8")) > MAX_STEM_BYTES:
        digest = hashlib.sha256(exam_id.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        cut = stem.encode("utf-8")[:MAX_STEM_BYTES - 11].decode("utf-8", "ignore")
        stem = f"{cut}-{digest}"
    return stem


def input_fingerprint(exam: ExamSource) -> str:
    """sha256 of the exam's image files' relative names and sizes: identifies the input without
    holding anything identifying."""
    digest = hashlib.sha256()
    entries = []
    for images in exam.images.values():
        for image in images:
            try:
                size = image.path.stat().st_size
            except OSError:
                size = -1
            entries.append((os.fsencode(image.relative), size))
    for name, size in sorted(entries):
        digest.update(name + b"\0" + str(size).encode() + b"\n")
    return "sha256:" + digest.hexdigest()


def _relative_folder(exam: ExamSource, root: Path) -> str:
    try:
        return printable(exam.folder.relative_to(root).as_posix())
    except ValueError:
        return printable(exam.folder.name)


@dataclass(frozen=True)
class PlannedExam:
    exam: ExamSource
    stem: str  # file name stem in every sink
    input: InputRef


def plan_exams(exams: Sequence[ExamSource], root: Path) -> tuple[list[PlannedExam], list[str]]:
    """Exams with ids and file stems unique within the run. Colliding ids (a PNG exam `x/` and
    a DICOM study in `dicom/x/`) become the exam folders relative to `root`; what was renamed is
    returned as notes and recorded in the exam's warnings."""
    root = Path(root)
    counts = Counter(e.exam_id for e in exams)
    taken: set[str] = set()
    renamed: list[str] = []
    out: list[PlannedExam] = []
    stems: set[str] = set()
    for exam in exams:
        new_id = exam.exam_id
        if counts[exam.exam_id] > 1:
            new_id = _relative_folder(exam, root) or exam.exam_id
        base, n = new_id, 2
        while new_id in taken:
            new_id, n = f"{base}-{n}", n + 1
        taken.add(new_id)
        if new_id != exam.exam_id:
            note = (f"exam id {printable(exam.exam_id)!r} is used by more than one exam in this "
                    f"run; this one is {printable(new_id)!r}")
            renamed.append(note)
            exam = replace(exam, exam_id=new_id, warnings=(*exam.warnings, note))
        stem = safe_file_stem(new_id)
        if stem.casefold() in stems:  # e.g. "a/b" and "a_b", or case-insensitive file systems
            digest = hashlib.sha256(new_id.encode("utf-8", "surrogateescape")).hexdigest()[:10]
            stem = f"{stem[:MAX_STEM_BYTES - 11]}-{digest}"
        stems.add(stem.casefold())
        ref = InputRef(folder=_relative_folder(exam, root), fingerprint=input_fingerprint(exam))
        out.append(PlannedExam(exam, stem, ref))
    return out, renamed


def stamp(record: Record, planned: PlannedExam) -> Record:
    """The record with the input it came from."""
    return record.model_copy(update={"input": planned.input})


def _read_records(path: Path) -> list[dict[str, Any]]:
    """Our own records from a result file (pretty JSON or JSON Lines); unreadable lines are
    ignored (a file we did not write is refused before by the overwrite rule)."""
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return []
    try:
        doc = json.loads(text)
        docs = doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError:
        docs = []
        for line in text.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                docs.append(json.loads(line))
    return [d for d in docs if isinstance(d, dict)]


def _same_input(doc: dict[str, Any], planned: PlannedExam) -> bool:
    ref = doc.get("input")
    return isinstance(ref, dict) and ref.get("fingerprint") == planned.input.fingerprint \
        and ref.get("folder") == planned.input.folder


def _done(doc: dict[str, Any], planned: PlannedExam) -> bool:
    return doc.get("status") == "ok" and _same_input(doc, planned)


def _redo(doc: dict[str, Any], planned: PlannedExam) -> bool:
    """A stored record this run may replace: a result of this very input, or the failure of
    this exam folder (its files may have been fixed since; a failure holds no result)."""
    ref = doc.get("input")
    same_folder = isinstance(ref, dict) and ref.get("folder") == planned.input.folder
    return _same_input(doc, planned) or (doc.get("status") == "failed" and same_folder)


class Sink:
    """One output. `plan` runs before the first exam and raises OutputError on any conflict."""

    option = ""
    where = ""

    def plan(self, exams: list[PlannedExam]) -> None:
        pass

    def done(self, planned: PlannedExam) -> dict[str, Any] | None:
        """The stored result of this exam from an earlier run of the same input (--resume)."""
        return None

    def claim(self, planned: PlannedExam) -> str | None:
        """Called just before an exam is computed; a reason to skip it (another run has it)."""
        return None

    def write(self, planned: PlannedExam, record: Record) -> None:
        pass

    def attach(self, planned: PlannedExam, output: ExamOutput) -> None:
        """Called before `write` with everything computed for the exam (arrays such as
        heatmaps), for sinks that write more than the record (e.g. DICOM heatmaps)."""

    def keep(self, planned: PlannedExam, doc: dict[str, Any]) -> None:
        """An exam skipped by --resume: `doc` is its stored result."""

    def close(self) -> None:
        pass


class StdoutSink(Sink):
    """JSON Lines, flushed after each exam (`| jq` sees results as they come); one exam: pretty
    JSON."""

    option = "stdout"
    where = "stdout"

    def __init__(self, single: bool, stream: TextIO | None = None) -> None:
        self.single = single
        self.stream = stream

    def write(self, planned: PlannedExam, record: Record) -> None:
        stream = self.stream or sys.stdout
        text = to_json(record, indent=2 if self.single else None) + "\n"
        try:
            stream.write(text)
            stream.flush()
        except OSError as exc:
            _silence(stream)
            raise write_failed("stdout", exc) from None


def _silence(stream: TextIO) -> None:
    """After a failed write to stdout, point it at /dev/null: the interpreter's final flush
    would otherwise fail again with a traceback."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


class JsonFileSink(Sink):
    """`-o FILE`: pretty JSON for one exam, else JSON Lines appended one line per exam (each
    line written whole or not at all). --resume keeps the lines of exams done with this input."""

    option = "-o"

    def __init__(self, path: Path, single: bool, *, overwrite: bool, resume: bool) -> None:
        self.path = Path(path)
        self.where = str(path)
        self.single = single
        self.overwrite = overwrite
        self.resume = resume
        self.kept: dict[str, dict[str, Any]] = {}  # exam id -> its stored result (done)
        self.lines: list[dict[str, Any]] = []  # records the file keeps
        self.started = False

    def plan(self, exams: list[PlannedExam]) -> None:
        check_file_target(self.path, "-o", overwrite=self.overwrite, append=self.resume)
        if not (self.resume and self.path.is_file()):
            return
        by_id = {printable(p.exam.exam_id): p for p in exams}
        others = []
        for doc in _read_records(self.path):
            planned = by_id.get(str(doc.get("exam_id")))
            if planned is None:
                self.lines.append(doc)  # an exam not in this run: kept as it is
            elif _done(doc, planned):
                self.lines.append(doc)
                self.kept[planned.exam.exam_id] = doc
            elif not _redo(doc, planned):
                others.append(planned.exam.exam_id)
        if others and not self.overwrite:
            raise OutputError(f"-o {self.path}: {len(others)} result(s) of this run's exam ids "
                              "come from another input (another folder or other files)",
                              hint="write this run to another file, or use --overwrite")

    def done(self, planned: PlannedExam) -> dict[str, Any] | None:
        return self.kept.get(planned.exam.exam_id)

    def _start(self) -> None:
        # The file now holds exactly the kept results; new lines are appended to it.
        lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in self.lines)
        try:
            atomic_write_text(self.path, lines)
        except OSError as exc:
            raise write_failed(self.path, exc) from None
        self.started = True

    def write(self, planned: PlannedExam, record: Record) -> None:
        if self.single:
            try:
                atomic_write_text(self.path, to_json(record, indent=2) + "\n")
            except OSError as exc:
                raise write_failed(self.path, exc) from None
            return
        if not self.started:
            self._start()
        _append_line(self.path, to_json(record) + "\n")


def _append_line(path: Path, line: str) -> None:
    """Append one line with one write and fsync; a partial write (disk full) is cut off again,
    so the file only ever holds whole lines."""
    data = line.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, "No space left on device")
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise write_failed(path, exc) from None
    finally:
        os.close(fd)


def check_exam_folder(folder: Path, option: str, exams: Sequence[PlannedExam],
                      output_of: Callable[[PlannedExam], Path], what: str, *, overwrite: bool,
                      resume: bool, hint: str) -> list[PlannedExam]:
    """Check a folder of per-exam outputs before a run: a folder we may write, and no output
    of these exams in it unless --overwrite or --resume says what to do with them. Returns the
    exams whose output is there already."""
    check_folder_target(folder, option)
    present = [p for p in exams if output_of(p).exists()]
    if present and not (overwrite or resume):
        raise OutputError(f"{option} {folder} already holds {what} for {len(present)} "
                          "exam(s) of this run", hint=hint)
    return present


class ExamLock:
    """An exclusive, non-blocking flock on one file (what `ledger` tests for "running"). Plain
    fcntl: filelock's registry of every lock a process took grew with each exam (a list scan
    per acquire, ~2 ms per exam after a few hundred)."""

    def __init__(self, lock_file: str) -> None:
        self.lock_file = lock_file
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class FolderSink(Sink):
    """`-o DIR/`: one `<stem>.json` per exam, failures included. Written by exclusive create
    (two runs into one folder never replace each other's files) under a per-exam lock (the
    second run skips an exam the first is computing)."""

    option = "-o"

    def __init__(self, path: Path, *, overwrite: bool, resume: bool) -> None:
        self.path = Path(path)
        self.where = f"{path}/" if not str(path).endswith("/") else str(path)
        self.overwrite = overwrite
        self.resume = resume
        self.existing: dict[str, dict[str, Any] | None] = {}  # stem -> stored doc
        self.locks: dict[str, ExamLock] = {}

    def _file(self, planned: PlannedExam) -> Path:
        return self.path / f"{planned.stem}.json"

    def plan(self, exams: list[PlannedExam]) -> None:
        present = check_exam_folder(
            self.path, "-o", exams, self._file, "results", overwrite=self.overwrite,
            resume=self.resume, hint="use --resume to skip them or --overwrite to redo them")
        others = []
        for p in present:
            docs = _read_records(self._file(p))
            doc = docs[0] if len(docs) == 1 else None
            self.existing[p.stem] = doc
            if doc is None or not _redo(doc, p):
                others.append(p)
        if others and not self.overwrite:
            names = ", ".join(f"{p.stem}.json" for p in others[:5])
            raise OutputError(
                f"-o {self.where}: {len(others)} result file(s) come from another input "
                f"(another folder or other files): {names}",
                hint="write this run to another folder, or use --overwrite to replace them")

    def done(self, planned: PlannedExam) -> dict[str, Any] | None:
        doc = self.existing.get(planned.stem)
        if self.resume and doc is not None and _done(doc, planned):
            return doc
        return None

    def claim(self, planned: PlannedExam) -> str | None:
        lock_dir = self.path / ".locks"
        try:
            if not lock_dir.is_dir():  # a stat per exam, not a failing mkdir (it is there)
                lock_dir.mkdir(parents=True, exist_ok=True)
            lock = ExamLock(str(lock_dir / f"{planned.stem}.lock"))
            if not lock.acquire():
                return "another run is computing it"
        except OSError as exc:
            raise write_failed(lock_dir, exc) from None
        self.locks[planned.stem] = lock
        if planned.stem not in self.existing and self._file(planned).exists():
            self._release(planned)
            return "another run wrote its result meanwhile"
        return None

    def _release(self, planned: PlannedExam) -> None:
        lock = self.locks.pop(planned.stem, None)
        if lock is not None:
            lock.release()
            # Safe to remove: whoever locks it next checks for the result file first.
            with contextlib.suppress(OSError):
                os.unlink(lock.lock_file)

    def write(self, planned: PlannedExam, record: Record) -> None:
        target = self._file(planned)
        try:
            replacing = planned.stem in self.existing  # checked against this input in plan
            atomic_write_text(target, to_json(record, indent=2) + "\n", exclusive=not replacing)
        except FileExistsError:
            raise OutputError(f"{target} was written by another run meanwhile; kept it",
                              hint="do not run two predicts into one folder without --resume"
                              ) from None
        except OSError as exc:
            raise write_failed(target, exc) from None
        finally:
            self._release(planned)

    def close(self) -> None:
        for lock in self.locks.values():
            lock.release()
            with contextlib.suppress(OSError):
                os.unlink(lock.lock_file)
        self.locks.clear()
        with contextlib.suppress(OSError):
            (self.path / ".locks").rmdir()  # only when empty: another run may hold locks


class CsvSink(Sink):
    """`--csv FILE`: the authors' four columns. --resume merges: rows of earlier runs stay, an
    exam computed again replaces its row. Rewritten atomically at most every few seconds and at
    the end (also after an interrupt)."""

    option = "--csv"
    every_s = 5.0
    header = CSV_HEADER

    def __init__(self, path: Path, *, overwrite: bool, resume: bool) -> None:
        self.path = Path(path)
        self.where = str(path)
        self.overwrite = overwrite
        self.resume = resume
        self.rows: dict[str, list[str]] = {}
        self.dirty = False
        self.last = 0.0

    def plan(self, exams: list[PlannedExam]) -> None:
        check_file_target(self.path, self.option, overwrite=self.overwrite, append=self.resume)
        if self.resume and self.path.is_file():
            try:
                table = [record.cells for record in read_records(self.path)]
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise OutputError(f"{self.option} {self.path}: cannot read it to merge ({exc})",
                                  hint="use --overwrite to replace it") from None
            if table and table[0] != self.header:
                raise OutputError(f"{self.option} {self.path}: not a CSV written by predict "
                                  f"{self.option}", hint="choose another file, or use --overwrite")
            self.merge(table[1:])

    def merge(self, rows: list[list[str]]) -> None:
        self.rows = {row[0]: row for row in rows if row}

    def table(self) -> list[list[str]]:
        return list(self.rows.values())

    def keep(self, planned: PlannedExam, doc: dict[str, Any]) -> None:
        if planned.exam.exam_id not in self.rows:
            with contextlib.suppress(ValueError):
                self.write(planned, PredictionResult.model_validate(doc))

    def write(self, planned: PlannedExam, record: Record) -> None:
        if isinstance(record, PredictionResult):
            row = csv_row(record)
            self.rows[row[0]] = row
            self.dirty = True
            if time.monotonic() - self.last >= self.every_s:
                self.flush()

    def flush(self) -> None:
        try:
            atomic_write_text(self.path, rows_to_csv(self.table(), self.header))
        except OSError as exc:
            raise write_failed(self.path, exc) from None
        self.dirty = False
        self.last = time.monotonic()

    def close(self) -> None:
        if self.dirty or not self.path.exists():
            self.flush()


class ImageCsvSink(CsvSink):
    """`--image-csv FILE`: one row per image (exam, view, file, variant, benign, malignant) for
    models that predict per image (GMIC, the image-wise DMV-CNN); merges on --resume by exam."""

    option = "--image-csv"
    header = IMAGE_CSV_HEADER

    def __init__(self, path: Path, *, overwrite: bool, resume: bool) -> None:
        super().__init__(path, overwrite=overwrite, resume=resume)
        self.images: dict[str, list[list[str]]] = {}

    def merge(self, rows: list[list[str]]) -> None:
        for row in rows:
            if row:
                self.images.setdefault(row[0], []).append(row)

    def table(self) -> list[list[str]]:
        return [row for rows in self.images.values() for row in rows]

    def keep(self, planned: PlannedExam, doc: dict[str, Any]) -> None:
        if planned.exam.exam_id not in self.images:
            with contextlib.suppress(ValueError):
                self.write(planned, PredictionResult.model_validate(doc))

    def write(self, planned: PlannedExam, record: Record) -> None:
        if isinstance(record, PredictionResult):
            self.images[printable(record.exam_id)] = image_csv_rows(record)
            self.dirty = True
            if time.monotonic() - self.last >= self.every_s:
                self.flush()


@dataclass
class Outputs:
    """The sinks of one run, planned together."""

    sinks: list[Sink]
    notes: list[str] = field(default_factory=list)
    written: int = 0

    @classmethod
    def open(cls, sinks: list[Sink], exams: list[PlannedExam]) -> Outputs:
        files = {s.option: s.path for s in sinks if isinstance(s, JsonFileSink | CsvSink)}
        check_distinct(files)
        for sink in sinks:
            sink.plan(exams)
        return cls(sinks)

    @property
    def primary(self) -> Sink:
        return self.sinks[0]

    def done(self, planned: PlannedExam) -> dict[str, Any] | None:
        doc = self.primary.done(planned)
        if doc is not None:
            for sink in self.sinks[1:]:
                sink.keep(planned, doc)
        return doc

    def claim(self, planned: PlannedExam) -> str | None:
        return self.primary.claim(planned)

    def write(self, planned: PlannedExam, record: Record,
              output: ExamOutput | None = None) -> None:
        record = stamp(record, planned)
        for sink in self.sinks:
            if output is not None:
                sink.attach(planned, output)
            sink.write(planned, record)
        self.written += 1

    def close(self) -> list[OutputError]:
        """Close every sink; the errors, not raised, so that one failing sink never stops the
        others from keeping what they hold."""
        errors = []
        for sink in self.sinks:
            try:
                sink.close()
            except OutputError as exc:
                errors.append(exc)
        return errors

    def where(self) -> str:
        return ", ".join(s.where for s in self.sinks)


def result_sink(output: str | None, single: bool, *, overwrite: bool, resume: bool) -> Sink:
    """The sink of `-o`: stdout, a folder (ends in / or is one), or a file."""
    if output is None:
        if resume:
            raise ConfigError("--resume needs -o FILE or -o DIR/ (stdout cannot be resumed)")
        return StdoutSink(single)
    if output.endswith(("/", "\\")) or Path(output).is_dir():
        return FolderSink(Path(output), overwrite=overwrite, resume=resume)
    return JsonFileSink(Path(output), single, overwrite=overwrite, resume=resume)


# --- heatmap folders ---------------------------------------------------------------------------

class ExamWriter(Protocol):
    """Writes pictures of each computed exam (`HeatmapFolders`, `preview.PreviewFolder`):
    `exports` names what it needs the family to hand out; `write` runs as the exam finishes."""

    def exports(self, family: Family) -> frozenset[Export]: ...
    def write(self, planned: PlannedExam, output: ExamOutput) -> object: ...


class HeatmapFolders:
    """`--save-heatmaps DIR` / `heatmaps -o DIR`: one `<stem>/` folder per exam, moved into place
    whole (a reader never sees half an exam's heatmaps)."""

    def __init__(self, path: Path, option: str, *, overwrite: bool, resume: bool) -> None:
        self.path = Path(path)
        self.option = option
        self.overwrite = overwrite
        self.resume = resume

    def plan(self, exams: list[PlannedExam]) -> None:
        check_exam_folder(self.path, self.option, exams, self.folder, "heatmaps",
                          overwrite=self.overwrite, resume=self.resume,
                          hint="use --overwrite to replace them, or choose another folder")

    def folder(self, planned: PlannedExam) -> Path:
        return self.path / planned.stem

    def exports(self, family: Family) -> frozenset[Export]:
        """The family's per-image maps: DMV-CNN heatmaps, GMIC saliency (`PICTURE_EXPORT`)."""
        return frozenset({PICTURE_EXPORT[family]})

    def write(self, planned: PlannedExam, output: ExamOutput) -> Path:
        """Write one exam's heatmaps into a temporary folder beside the target, then move it
        into place (replacing an earlier one only as planned)."""
        from .heatmaps import write_heatmaps  # matplotlib: only when heatmaps are asked

        target = self.folder(planned)
        staged: Path | None = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            staged = Path(tempfile.mkdtemp(prefix=".heatmaps.", dir=self.path))
            write_heatmaps(output, planned.exam.exam_id, staged)
            os.chmod(staged, 0o777 & ~umask())
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=".old.", dir=self.path))
                os.replace(target, old / "heatmaps")
                shutil.rmtree(old, ignore_errors=True)
            os.replace(staged, target)
            staged = None
        except OSError as exc:
            raise write_failed(target, exc) from None
        finally:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)
        return target
