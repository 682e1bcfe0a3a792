"""Studies from a PACS over DICOMweb (QIDO-RS, WADO-RS, STOW-RS; issue 15).

Headers first: the study's metadata (WADO-RS, no pixel data) goes through the same view
detection and selection as folder input (`dicom.scan`, `dicom.select`); only the instances the
selection keeps are retrieved, into a private temporary folder that is always removed, and
that folder is then discovered as any DICOM folder (so pixel checks and reasons are the same).
Files are named by hashes of their UIDs (`<series>/<instance>.dcm`): stable across runs, and
never an identifier.

Credentials come from the environment or a file (`auth_from_environment`), never from the
command line, and are never logged. TLS certificates are verified (a CA bundle may be given);
there is no switch to turn verification off.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from ..errors import ConfigError, InputError
from ..views import VIEWS
from .dicom.discover import discover_dicom_exams, is_valid_uid
from .dicom.options import DicomOptions
from .dicom.scan import header_from_dataset
from .dicom.select import select_images
from .exam import ExamProblem, ExamSource, SkippedFile

__all__ = [
    "DicomwebAuth", "DicomwebAuthError", "DicomwebError", "DicomwebSource", "RetrievedStudy",
    "RetryPolicy", "auth_from_environment", "exam_id_for", "is_dicomweb_path",
    "parse_dicomweb_url", "parse_query", "read_studies_file",
]

SCHEME_PREFIX = "dicomweb+"
ENV_TOKEN = "MAMMOCLI_DICOMWEB_TOKEN"
ENV_TOKEN_FILE = "MAMMOCLI_DICOMWEB_TOKEN_FILE"
ENV_USER = "MAMMOCLI_DICOMWEB_USER"
ENV_PASSWORD = "MAMMOCLI_DICOMWEB_PASSWORD"
ENV_PASSWORD_FILE = "MAMMOCLI_DICOMWEB_PASSWORD_FILE"
ENV_CA_BUNDLE = "MAMMOCLI_DICOMWEB_CA_BUNDLE"

_AUTH_HINT = (f"set {ENV_TOKEN} (or {ENV_TOKEN_FILE}) for a bearer token, or {ENV_USER} with "
              f"{ENV_PASSWORD} (or {ENV_PASSWORD_FILE}) for basic auth")


class DicomwebError(InputError, ConnectionError):
    """The DICOMweb server cannot be reached or answers with an error (exit 3). `status`: the
    HTTP status when the server answered one."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class DicomwebAuthError(ConfigError, PermissionError):
    """The server refused the credentials (HTTP 401/403): a configuration problem (exit 2)."""


# --- what the user names ----------------------------------------------------------------------

def is_dicomweb_path(text: str) -> bool:
    """True for `dicomweb+http://...` and `dicomweb+https://...` (what `predict` accepts)."""
    return text.lower().startswith((SCHEME_PREFIX + "http://", SCHEME_PREFIX + "https://"))


def parse_dicomweb_url(text: str) -> str:
    """`dicomweb+http(s)://host[:port]/base` -> the service's base URL `http(s)://host/base`."""
    if not is_dicomweb_path(text):
        raise ConfigError("a DICOMweb address starts with dicomweb+http:// or dicomweb+https://",
                          hint="e.g. dicomweb+http://localhost:8042/dicom-web")
    url = text[len(SCHEME_PREFIX):]
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # The URL is not echoed: it holds a secret.
        raise ConfigError("credentials in the DICOMweb address are not accepted (they would "
                          "end up in shell history and process lists)", hint=_AUTH_HINT)
    if not parts.hostname:
        raise ConfigError(f"{text}: no host in the DICOMweb address")
    if parts.query or parts.fragment:
        raise ConfigError(f"{text}: a DICOMweb address has no query (?...) or fragment (#...)",
                          hint="give QIDO-RS filters with --query KEY=VALUE")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigError(f"{text}: invalid port in the DICOMweb address") from exc
    return url.rstrip("/")


def read_studies_file(path: Path) -> list[str]:
    """A `--studies-file`: one StudyInstanceUID per line; blank lines and `#` comments skipped.
    Errors give the line number, never the value (a UID identifies a study)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name}: cannot read the studies file "
                          f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from exc
    uids = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not is_valid_uid(text):
            raise ConfigError(f"{path.name} line {number}: not a StudyInstanceUID (digits and "
                              "dots, at most 64 characters)")
        uids.append(text)
    if not uids:
        raise ConfigError(f"{path.name}: no StudyInstanceUID in the studies file")
    return list(dict.fromkeys(uids))


def check_study_uids(uids: Sequence[str]) -> list[str]:
    """`--study` values, validated (by position, never echoed), duplicates removed."""
    for number, uid in enumerate(uids, start=1):
        if not is_valid_uid(uid.strip()):
            raise ConfigError(f"--study value #{number} is not a StudyInstanceUID (digits and "
                              "dots, at most 64 characters)")
    return list(dict.fromkeys(u.strip() for u in uids))


_TAG_HEX = re.compile(r"[0-9A-Fa-f]{8}")


def parse_query(items: Sequence[str]) -> dict[str, str]:
    """`--query KEY=VALUE` items -> QIDO-RS search filters. KEY is a DICOM keyword
    (ModalitiesInStudy) or a tag (00080061). Values are not echoed: they may name a patient."""
    filters: dict[str, str] = {}
    for number, item in enumerate(items, start=1):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise ConfigError(f"--query #{number}: expected KEY=VALUE, e.g. "
                              "ModalitiesInStudy=MG or StudyDate=20240101-20240131")
        if tag_for_keyword(key) is None and not _TAG_HEX.fullmatch(key):
            raise ConfigError(f"--query #{number}: {key!r} is not a DICOM keyword or tag",
                              hint="use keywords such as ModalitiesInStudy, StudyDate, "
                                   "AccessionNumber")
        filters[key] = value.strip()
    return filters


def _short_hash(uid: str) -> str:
    return hashlib.sha1(uid.encode()).hexdigest()[:8]


def exam_id_for(study_uid: str, options: DicomOptions | None = None) -> str:
    """The exam id a retrieved study gets: the one folder discovery gives a study
    (`study-<hash>`, or the UID itself with `include_uids`), stable across runs for --resume."""
    if options is not None and options.include_uids and is_valid_uid(study_uid):
        return study_uid
    return "study-" + _short_hash(study_uid)


# --- credentials ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DicomwebAuth:
    """A bearer token or a user and password. The secret never appears in repr or messages."""

    kind: Literal["bearer", "basic"]
    secret: str = field(repr=False)
    user: str = ""

    def apply(self, session: requests.Session) -> None:
        if self.kind == "bearer":
            session.headers["Authorization"] = f"Bearer {self.secret}"
        else:
            session.auth = (self.user, self.secret)


def _secret(environ: Mapping[str, str], value_var: str, file_var: str) -> str | None:
    value, file = environ.get(value_var, ""), environ.get(file_var, "")
    if value and file:
        raise ConfigError(f"both {value_var} and {file_var} are set; set one")
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file_var}: cannot read the file it names "
                              f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from exc
        if not text:
            raise ConfigError(f"{file_var}: the file it names is empty")
        return text
    return value.strip() or None


def auth_from_environment(environ: Mapping[str, str] | None = None) -> DicomwebAuth | None:
    """Credentials from MAMMOCLI_DICOMWEB_TOKEN[_FILE] (bearer) or MAMMOCLI_DICOMWEB_USER with
    MAMMOCLI_DICOMWEB_PASSWORD[_FILE] (basic); None when none is set."""
    env = os.environ if environ is None else environ
    token = _secret(env, ENV_TOKEN, ENV_TOKEN_FILE)
    user = env.get(ENV_USER, "").strip()
    password = _secret(env, ENV_PASSWORD, ENV_PASSWORD_FILE)
    if token and (user or password):
        raise ConfigError("both a bearer token and basic-auth credentials are set; set one",
                          hint=_AUTH_HINT)
    if token:
        return DicomwebAuth("bearer", token)
    if user and password:
        return DicomwebAuth("basic", password, user)
    if user or password:
        raise ConfigError(f"basic auth needs both {ENV_USER} and {ENV_PASSWORD} "
                          f"(or {ENV_PASSWORD_FILE})")
    return None


def ca_bundle_from_environment(environ: Mapping[str, str] | None = None) -> Path | None:
    """MAMMOCLI_DICOMWEB_CA_BUNDLE: a PEM file of the certificate authorities to trust (for a
    hospital CA); TLS is verified either way."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_CA_BUNDLE, "").strip()
    if not value:
        return None
    if not Path(value).is_file():
        raise ConfigError(f"{ENV_CA_BUNDLE}: no such file")
    return Path(value)


# --- retries ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per request; waits `backoff` s, doubled after each failure, at most `max_wait`.
    Retried: HTTP 5xx, 429 and 408, connection errors and timeouts."""

    attempts: int = 5
    backoff: float = 0.5
    max_wait: float = 8.0


_RETRIED = frozenset({408, 429})
T = TypeVar("T")


def _status(exc: requests.HTTPError) -> int | None:
    return exc.response.status_code if exc.response is not None else None


# URLs carry UIDs: these loggers would print them (dicomweb-client logs them at INFO).
_CHATTY_LOGGERS = ("dicomweb_client", "urllib3.connectionpool")


def _quiet_http_loggers() -> None:
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


# --- the source -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetrievedStudy:
    """One study as retrieved: the exam (files in the temporary folder) and the metadata of its
    instances by file name, for DICOM outputs once the folder is gone. The UIDs are for the
    outputs that go back to the PACS; never print them."""

    study_uid: str
    exam: ExamSource
    headers: dict[str, Dataset]  # relative file name -> metadata (no pixel data)


def _first(item: Mapping[str, Any], tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or []
    return str(values[0]).strip() if values else ""


class DicomwebSource:
    """A DICOMweb service: find studies, retrieve them for the folder pipeline, store results.

    `workers` bounds the concurrent instance retrievals; `verify` is True (the system's CAs) or
    a CA bundle path; `sleep` is replaceable for tests of the back-off.
    """

    def __init__(self, base_url: str, *, auth: DicomwebAuth | None = None,
                 retry: RetryPolicy | None = None, workers: int = 4, timeout: float = 60.0,
                 verify: bool | Path = True,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from dicomweb_client.api import DICOMwebClient

        if workers < 1:
            raise ConfigError("the number of concurrent DICOMweb retrievals must be at least 1")
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.workers = workers
        self._sleep = sleep
        self.warnings: list[str] = []
        _quiet_http_loggers()
        session = requests.Session()
        session.verify = str(verify) if isinstance(verify, Path) else verify
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, workers))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        if auth is not None:
            auth.apply(session)
            if urlsplit(base_url).scheme == "http" and not _loopback(base_url):
                self.warnings.append("credentials are sent to the DICOMweb server over plain "
                                     "HTTP; use https:// outside a test setup")
        self._client = DICOMwebClient(base_url, session=session, timeout=timeout)
        # One retry loop (ours, `_call`): the client's own would retry connection errors
        # silently and log tracebacks that hold the request URL (UIDs).
        self._client.set_http_retry_params(retry=False)

    # Every request goes through here: retries, and errors that name no identifier.
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        last = ""
        for attempt in range(max(1, self.retry.attempts)):
            if attempt:
                self._sleep(min(self.retry.max_wait, self.retry.backoff * 2 ** (attempt - 1)))
            try:
                return fn()
            except requests.HTTPError as exc:
                status = _status(exc)
                if status in (401, 403):
                    raise DicomwebAuthError(
                        f"the DICOMweb server at {self.base_url} refused the credentials "
                        f"(HTTP {status}) while {what}", hint=_AUTH_HINT) from None
                if status is not None and status < 500 and status not in _RETRIED:
                    raise DicomwebError(
                        f"the DICOMweb server at {self.base_url} answered HTTP {status} while "
                        f"{what}", hint=_hint_for(status), status=status) from None
                last = f"HTTP {status}"
            except requests.exceptions.SSLError:
                raise DicomwebError(
                    f"the TLS certificate of {self.base_url} cannot be verified while {what}",
                    hint=f"give the hospital's CA certificates in {ENV_CA_BUNDLE} (a PEM "
                         "file); verification cannot be turned off") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = ("timed out" if isinstance(exc, requests.Timeout)
                        else "connection failed")
        raise DicomwebError(
            f"the DICOMweb server at {self.base_url} failed while {what}: {last} "
            f"({self.retry.attempts} attempts)",
            hint="check that the server is up and the address is right, then run again "
                 "(--resume skips the studies already done)")

    def find_studies(self, filters: Mapping[str, str]) -> list[str]:
        """StudyInstanceUIDs matching QIDO-RS filters (all pages), in the server's order."""
        found = self._call("searching for studies (QIDO-RS)",
                           lambda: self._client.search_for_studies(
                               search_filters=dict(filters), get_remaining=True))
        uids = [_first(item, "0020000D") for item in found]
        return list(dict.fromkeys(u for u in uids if u))

    def retrieve_study(self, study_uid: str, folder: Path, options: DicomOptions | None = None,
                       *, label: str = "the study") -> RetrievedStudy:
        """Metadata first, selection, then the kept instances into `folder` (created; the
        caller removes it). `label` names the study in errors (e.g. 'study 2 of 5')."""
        options = options or DicomOptions()
        exam_id = exam_id_for(study_uid, options)
        metadata = self._call(f"reading the metadata of {label} (WADO-RS)",
                              lambda: self._client.retrieve_study_metadata(study_uid))
        if not metadata:
            raise DicomwebError(f"the server has no instance of {label}",
                                hint="check the StudyInstanceUID or the --query filters",
                                status=404)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        headers: dict[str, Dataset] = {}
        wanted: dict[str, tuple[str, str]] = {}  # relative -> (series uid, sop uid)
        skipped: list[SkippedFile] = []
        records = []
        for item in metadata:
            series, sop = _first(item, "0020000E"), _first(item, "00080018")
            if not series or not sop:
                skipped.append(SkippedFile(f"instance-{len(skipped) + 1}", "the server's "
                                           "metadata has no SeriesInstanceUID or SOPInstanceUID"))
                continue
            relative = f"{_short_hash(series)}/{_short_hash(sop)}.dcm"
            wanted[relative] = (series, sop)
            try:
                # Bulk data (the pixels) stays on the server: no handler fetches it.
                ds = Dataset.from_json(dict(item), bulk_data_uri_handler=_no_bulk_data)
                if "PixelData" in ds:
                    del ds.PixelData
            except Exception:  # noqa: BLE001 - judged from the file itself once retrieved
                continue
            headers[relative] = ds
            try:
                records.append(header_from_dataset(folder / relative, relative, ds,
                                                   has_pixels=_has_pixels(item),
                                                   max_pixels=options.max_pixels))
            except InputError as exc:
                skipped.append(SkippedFile(relative, exc.message.removeprefix(f"{relative}: ")))
                del wanted[relative]
        selection = select_images(records, options)
        kept = {s.relative for sources in selection.images.values() for s in sources}
        # Left out by the selection: not retrieved. Metadata that could not be parsed: retrieved,
        # and judged as a file.
        skipped.extend(selection.skipped)
        chosen = {r: uids for r, uids in wanted.items() if r in kept or r not in headers}
        failed = self._retrieve_instances(study_uid, chosen, folder, label)
        skipped.extend(failed)
        return RetrievedStudy(study_uid, self._exam(exam_id, folder, options, skipped), headers)

    def _retrieve_instances(self, study_uid: str, chosen: Mapping[str, tuple[str, str]],
                            folder: Path, label: str) -> list[SkippedFile]:
        def fetch(relative: str) -> SkippedFile | None:
            series, sop = chosen[relative]
            try:
                ds = self._call(f"retrieving an image of {label} (WADO-RS)",
                                lambda: self._client.retrieve_instance(study_uid, series, sop))
            except DicomwebAuthError:
                raise
            except DicomwebError as exc:
                return SkippedFile(relative, f"not retrieved: {exc.message.split(': ')[-1]}")
            except Exception as exc:  # noqa: BLE001 - what the server sent is not DICOM
                return SkippedFile(relative, "the server sent an instance that cannot be read "
                                   f"as DICOM ({type(exc).__name__})")
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                ds.save_as(path, enforce_file_format=True)
            except Exception as exc:  # noqa: BLE001 - one bad instance must not end the study
                path.unlink(missing_ok=True)
                return SkippedFile(relative, "the server sent an instance that cannot be "
                                   f"written as a DICOM file ({type(exc).__name__})")
            return None

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            results = list(pool.map(fetch, sorted(chosen)))
        return [r for r in results if r is not None]

    def _exam(self, exam_id: str, folder: Path, options: DicomOptions,
              skipped: list[SkippedFile]) -> ExamSource:
        """The retrieved files discovered as a folder, with what was left out before."""
        exams: list[ExamSource] = []
        if any(folder.rglob("*.dcm")):
            exams, _ = discover_dicom_exams(folder, options=options)
        if len(exams) == 1:
            exam = exams[0]
            everything = {s.relative: s for s in (*skipped, *exam.skipped)}
            return replace(exam, exam_id=exam_id, folder=folder,
                           skipped=tuple(sorted(everything.values(), key=lambda s: s.relative)))
        problem = None
        if len(exams) > 1:
            problem = ExamProblem(f"the retrieved instances form {len(exams)} exams, not one "
                                  "(their StudyInstanceUIDs differ from the study requested)",
                                  hint="check the study on the server")
        return ExamSource(exam_id=exam_id, folder=folder, images={v: () for v in VIEWS},
                          skipped=tuple(sorted(skipped, key=lambda s: s.relative)),
                          input_kind="dicom", problem=problem)

    @contextmanager
    def retrieved(self, study_uids: Sequence[str], options: DicomOptions | None = None, *,
                  parent: Path | None = None) -> Iterator[list[RetrievedStudy]]:
        """Retrieve the studies into one private temporary folder (under `parent`, default the
        system's), removed when the block ends, whatever happens."""
        root = Path(tempfile.mkdtemp(prefix="mammocli-dicomweb-", dir=parent))
        try:
            total = len(study_uids)
            yield [self._retrieve_or_fail(uid, root / exam_id_for(uid, options), options,
                                          f"study {i} of {total}")
                   for i, uid in enumerate(study_uids, start=1)]
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _retrieve_or_fail(self, uid: str, folder: Path, options: DicomOptions | None,
                          label: str) -> RetrievedStudy:
        """A study the server does not have fails alone (as an exam with that problem); a
        server that fails ends the run."""
        try:
            return self.retrieve_study(uid, folder, options, label=label)
        except DicomwebError as exc:
            if exc.status != 404:
                raise
            exam = ExamSource(exam_id=exam_id_for(uid, options), folder=folder,
                              images={v: () for v in VIEWS}, input_kind="dicom",
                              problem=ExamProblem(exc.message, exc.hint))
            return RetrievedStudy(uid, exam, {})

    def store(self, datasets: Sequence[Dataset], *, what: str = "storing the results") -> None:
        """Send datasets with STOW-RS (retried as every request). DicomwebError when the server
        reports a failure for any of them."""
        if not datasets:
            return
        response = self._call(f"{what} (STOW-RS)",
                              lambda: self._client.store_instances(list(datasets)))
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            raise DicomwebError(f"the DICOMweb server at {self.base_url} rejected "
                                f"{len(failed)} of {len(datasets)} object(s) while {what}",
                                hint="see the server's log for the reason")


def _no_bulk_data(tag: str, vr: str, uri: str) -> None:
    return None


def _has_pixels(item: Mapping[str, Any]) -> bool:
    """False only when the metadata shows an empty PixelData; a server that leaves the element
    out of its metadata gets the file judged once retrieved."""
    element = item.get("7FE00010")
    if element is None:
        return True
    return any(k in element for k in ("BulkDataURI", "InlineBinary", "Value"))


def _hint_for(status: int) -> str:
    if status == 404:
        return ("check the DICOMweb base address (e.g. .../dicom-web) and that the study "
                "exists on the server")
    return "check the DICOMweb base address and the request options"


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
