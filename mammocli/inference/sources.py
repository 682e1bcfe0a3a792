"""Where the exams of a `predict` run come from (issues 15 and 16): a folder (one exam, or a root
of exams), an exam list (`--exams exams.csv`: folders and DICOMweb study UIDs), or a DICOMweb
server (`dicomweb+http(s)://...` with `--study`, `--studies-file` or `--query`).

`exams_to_run` turns a `SourceRequest` into the planned exams of this run, after `--shard`,
`--retry-failed` and, for DICOMweb studies, `--resume` (a study whose result is already in the
output is not retrieved again: its exam id comes from its StudyInstanceUID, `exam_id_for`).
DICOMweb studies are retrieved into a temporary folder that exists only inside the `with`
block. Silent: what the caller should show comes back as `notes`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..io.dicom.options import DicomOptions
from ..io.discover import discover, read_views_csv
from ..io.exam import ExamSource
from ..outputs.schema import printable
from ..outputs.sinks import PlannedExam, plan_exams
from .shards import Shard, parse_shard

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from ..io.dicomweb import DicomwebSource
    from ..io.exam_list import ExamEntry

__all__ = ["ExamsToRun", "SourceRequest", "exams_to_run", "finished_exam_ids"]


@dataclass(frozen=True)
class SourceRequest:
    """What the user named: `path` (a folder or a dicomweb+ address) or `exams` (an exam list,
    whose study rows are retrieved from `dicomweb`), and which of those exams this task runs."""

    path: str | None = None
    studies: tuple[str, ...] = ()  # --study
    studies_file: Path | None = None
    queries: tuple[str, ...] = ()  # --query KEY=VALUE
    exams: Path | None = None  # --exams exams.csv
    dicomweb: str | None = None  # --dicomweb: the server of an exam list's study rows
    views_csv: Path | None = None
    shard: str | None = None  # --shard K/N | auto
    retry_failed: bool = False
    output: str | None = None  # -o, for --resume and --retry-failed
    resume: bool = False


@dataclass
class ExamsToRun:
    """The planned exams of this run, and what goes with them."""

    planned: list[PlannedExam]
    notes: list[str] = field(default_factory=list)  # for the user's console (safe to show)
    already_done: int = 0  # left out before retrieval: their results are in the output
    shard: Shard | None = None
    listed: int = 0  # exams named by the input before shard and retry selection
    server: DicomwebSource | None = None  # where the studies came from (for --store-back)
    headers: dict[str, Mapping[str, Dataset]] = field(default_factory=dict)  # stem -> headers

    def headers_for(self, planned: PlannedExam) -> Mapping[str, Dataset] | None:
        return self.headers.get(planned.stem)


def _is_folder_output(output: str | None) -> bool:
    return output is not None and (output.endswith(("/", "\\")) or Path(output).is_dir())


def finished_exam_ids(output: str | None) -> set[str]:
    """Exam ids with an ok result in `-o` (a results folder or a JSON/JSON Lines file)."""
    if output is None:
        return set()
    if _is_folder_output(output):
        from ..outputs.ledger import read_ledger

        folder = Path(output)
        if not folder.is_dir():
            return set()
        return {i for i, r in read_ledger(folder).records.items() if r.ok}
    path = Path(output)
    if not path.is_file():
        return set()
    docs: list[Any] = []
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return set()
    try:
        doc = json.loads(text)
        docs = doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError:
        for line in text.splitlines():
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return {str(d.get("exam_id")) for d in docs
            if isinstance(d, dict) and d.get("status") == "ok"}


def _failed_ids(output: str | None, ids: Sequence[str]) -> set[str]:
    if not _is_folder_output(output):
        raise ConfigError("--retry-failed needs -o DIR/ (the results folder is the ledger of "
                          "what failed)", hint="give the folder of the earlier runs, e.g. "
                                               "-o results/")
    from ..outputs.ledger import read_ledger, retry_failed_ids

    assert output is not None
    return set(retry_failed_ids(read_ledger(Path(output)), ids))


def _check(request: SourceRequest) -> None:
    from ..io.dicomweb import is_dicomweb_path

    web = request.path is not None and is_dicomweb_path(request.path)
    if request.exams is not None and request.path is not None:
        raise ConfigError("give either PATH or --exams, not both",
                          hint="an exam list names the exams itself")
    if request.exams is None and request.path is None:
        raise ConfigError("no exams: give an exam folder, a DICOMweb address, or --exams "
                          "exams.csv")
    if not web and (request.studies or request.studies_file or request.queries):
        raise ConfigError("--study, --studies-file and --query need a DICOMweb address as "
                          "PATH", hint="e.g. mammocli predict "
                                       "dicomweb+http://localhost:8042/dicom-web --study UID")
    if request.dicomweb is not None and request.exams is None:
        raise ConfigError("--dicomweb names the server of an exam list's study rows; use it "
                          "with --exams", hint="for studies on a server, give the "
                                               "dicomweb+http(s):// address as PATH")
    if web and request.views_csv is not None:
        raise ConfigError("--views-csv maps files of a folder; it does not apply to DICOMweb "
                          "studies")


def _server(address: str) -> DicomwebSource:
    from ..io.dicomweb import (
        DicomwebSource,
        auth_from_environment,
        ca_bundle_from_environment,
        parse_dicomweb_url,
    )

    return DicomwebSource(parse_dicomweb_url(address), auth=auth_from_environment(),
                          verify=ca_bundle_from_environment() or True)


def _study_uids(request: SourceRequest, server: DicomwebSource) -> list[str]:
    from ..io.dicomweb import check_study_uids, parse_query, read_studies_file

    uids = check_study_uids(list(request.studies))
    if request.studies_file is not None:
        uids += read_studies_file(request.studies_file)
    if uids and request.queries:
        raise ConfigError("give studies either by --study/--studies-file or by --query")
    if not uids:
        if not request.queries:
            raise ConfigError("a DICOMweb address needs --study UID, --studies-file FILE or "
                              "--query KEY=VALUE", hint="e.g. --query ModalitiesInStudy=MG")
        uids = server.find_studies(parse_query(list(request.queries)))
    return list(dict.fromkeys(uids))


@dataclass(frozen=True)
class _Item:
    """One exam to run before retrieval: a discovered folder exam or a study to retrieve."""

    exam_id: str
    exam: ExamSource | None = None
    study_uid: str | None = None


def _select(items: list[_Item], request: SourceRequest, done: set[str],
            run: ExamsToRun) -> list[_Item]:
    run.listed = len(items)
    run.shard = parse_shard(request.shard)
    if run.shard is not None:
        items = [i for i in items if run.shard.holds(i.exam_id)]
    if request.retry_failed:
        failed = _failed_ids(request.output, [i.exam_id for i in items])
        items = [i for i in items if i.exam_id in failed]
    # A study whose result is in the output is not retrieved again (--resume by its UID).
    kept = [i for i in items if i.study_uid is None or i.exam_id not in done]
    run.already_done = len(items) - len(kept)
    return kept


@contextmanager
def exams_to_run(request: SourceRequest, dicom: DicomOptions) -> Iterator[ExamsToRun]:
    """The exams of this run, planned (ids and file stems unique); DICOMweb studies retrieved
    into a temporary folder removed when the block ends. Errors that concern the whole run
    raise (bad options, refused credentials: ConfigError; a server that fails: InputError);
    an exam that cannot be read fails alone (its `ExamSource.problem`)."""
    _check(request)
    done = finished_exam_ids(request.output) if request.resume else set()
    run = ExamsToRun(planned=[])
    server: DicomwebSource | None = None
    root: Path
    if request.exams is not None:
        from ..io.exam_list import exam_source, read_exam_list

        listing = read_exam_list(request.exams, dicom)
        root = listing.base
        studies = listing.studies
        if studies and request.dicomweb is None:
            raise ConfigError(f"{studies[0].where}: a StudyInstanceUID row needs the server "
                              "to retrieve it from", hint="add --dicomweb "
                                                          "dicomweb+http(s)://HOST/BASE")
        entries: dict[str, ExamEntry] = {e.exam_id: e for e in listing.entries}
        items = [_Item(e.exam_id, study_uid=e.study_uid) for e in listing.entries]
        items = _select(items, request, done, run)
        # Folders are read only now: a task reads its own shard's exams, nothing else.
        items = [_Item(i.exam_id, exam_source(entries[i.exam_id], dicom))
                 if i.study_uid is None else i for i in items]
        if request.dicomweb is not None and any(i.study_uid for i in items):
            server = _server(request.dicomweb)
    elif request.path is not None and _is_web(request.path):
        from ..io.dicomweb import exam_id_for

        server = _server(request.path)
        uids = _study_uids(request, server)
        items = _select([_Item(exam_id_for(u, dicom), study_uid=u) for u in uids], request,
                        done, run)
        root = Path(".")
    else:
        assert request.path is not None
        root = Path(request.path)
        found = discover(root, options=dicom,
                         views=read_views_csv(request.views_csv) if request.views_csv else None)
        run.notes += [f"{printable(s.relative)}: left out: {s.reason}" for s in found.ignored]
        items = _select([_Item(e.exam_id, e) for e in found.exams], request, done, run)
    run.server = server
    if server is not None:
        run.notes += server.warnings
    with ExitStack() as stack:
        wanted = [i for i in items if i.study_uid is not None]
        retrieved = {}
        if wanted:
            assert server is not None
            studies_got = stack.enter_context(
                server.retrieved([i.study_uid for i in wanted if i.study_uid], dicom))
            retrieved = dict(zip((i.exam_id for i in wanted), studies_got, strict=True))
        exams: list[ExamSource] = []
        for item in items:
            if item.exam is not None:
                exams.append(item.exam)
            else:
                study = retrieved[item.exam_id]
                exams.append(_with_id(study.exam, item.exam_id))
        planned, renamed = plan_exams(exams, root)
        run.notes += renamed
        run.planned = planned
        by_id = {item.exam_id: p for item, p in zip(items, planned, strict=True)}
        run.headers = {by_id[i].stem: study.headers for i, study in retrieved.items()}
        yield run


def _is_web(path: str) -> bool:
    from ..io.dicomweb import is_dicomweb_path

    return is_dicomweb_path(path)


def _with_id(exam: ExamSource, exam_id: str) -> ExamSource:
    from dataclasses import replace

    return exam if exam.exam_id == exam_id else replace(exam, exam_id=exam_id)
