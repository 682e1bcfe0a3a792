"""Download, verify and cache the official files; `resolve_weights` is what the pipeline calls.

How a file reaches the cache (never a partial or unverified file under its final name):
1. a per-file lock (filelock) serialises processes fetching the same file, so parallel jobs
   download it once; whoever gets the lock second finds the verified file and returns;
2. pooch creates a uniquely named temporary file in the cache folder and calls our downloader;
3. our downloader streams the bytes with requests (timeouts, proxies from the environment), retries
   transient failures (connection errors, timeouts, truncated transfers, HTTP 5xx/429) with
   exponential back-off, then checks the git blob SHA-1 *of the temporary file*; a mismatch deletes
   it and raises WeightsError (pooch's own hash check and processors run only after the move, and
   pooch has no git-blob hash, hence the custom downloader);
4. only then does pooch rename the temporary file into place (same folder: an atomic rename), and
   pooch removes the temporary file on any error.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

import pooch
import requests
from filelock import FileLock

from .. import __version__
from ..errors import DownloadError, WeightsError
from ..hashing import sha256_file
from ..outputs.weights_used import WeightsUsed
from ..reporting import Tracker, log, track
from ..settings import Settings, load_settings
from .cache import sample_path, samples_cache_dir, weights_cache_dir
from .guide import GUIDE_COMMAND, WAYS_OUT
from .registry import Entry, Registry, load_registry, verification_problem
from .store import find_user_weights, verify_user_weights

_CHUNK = 1 << 16
_MAX_WAIT = 30.0
# Status codes worth another try: server trouble, rate limiting, gateway timeouts.
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4  # extra attempts after the first
    backoff: float = 1.0  # first wait in seconds, doubled each time (capped at 30 s)
    timeout: float = 60.0  # connect and per-read timeout in seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.download_retries, settings.download_backoff,
                   settings.download_timeout)


class _Transient(Exception):
    """A failure that another attempt may fix."""


class GitBlobDownloader:
    """A pooch downloader that retries transient failures and verifies the git blob SHA-1 of the
    temporary file before pooch moves it into the cache."""

    def __init__(self, entry: Entry, retry: RetryPolicy, show_progress: bool) -> None:
        self.entry = entry
        self.retry = retry
        self.show_progress = show_progress

    def __call__(self, url: str, output_file: str | IO[bytes], pooch_obj: Any,
                 check_only: bool = False) -> None:
        if not isinstance(output_file, str):  # pooch always passes a path; keep mypy honest
            raise TypeError("GitBlobDownloader writes to a path")
        tmp = Path(output_file)
        with track(self.entry.name, unit="bytes", enabled=self.show_progress) as bar:
            self._download_with_retries(url, tmp, bar)
        problem = verification_problem(self.entry, tmp)
        if problem is not None:
            tmp.unlink(missing_ok=True)
            raise WeightsError(
                f"{self.entry.name} downloaded from {url} failed verification: {problem}; "
                "nothing was cached",
                hint="the server or a proxy delivered other bytes; check MAMMOCLI_WEIGHTS_URL "
                     "(a mirror must serve the authors' files unchanged) and try again",
            )

    def _download_with_retries(self, url: str, tmp: Path, bar: Tracker | None) -> None:
        for attempt in range(self.retry.retries + 1):
            try:
                _stream(url, tmp, self.retry.timeout, bar)
                return
            except _Transient as exc:
                if attempt == self.retry.retries:
                    raise DownloadError(
                        f"could not download {self.entry.name} from {url} after "
                        f"{attempt + 1} attempts: {exc}",
                        hint=f"check the network or proxy (HTTPS_PROXY); {WAYS_OUT}",
                    ) from None
                wait = min(self.retry.backoff * 2**attempt, _MAX_WAIT)
                log.info("download of %s failed (%s); retrying in %.2f s", self.entry.name, exc,
                         wait)
                time.sleep(wait)


def _stream(url: str, tmp: Path, timeout: float, bar: Tracker | None) -> None:
    """One attempt: write the whole body to `tmp` (truncating what a failed attempt left)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":  # a mirror on a shared drive: MAMMOCLI_WEIGHTS_URL=file:///mnt/...
        source = Path(unquote(parsed.path))
        if not source.is_file():
            raise DownloadError(f"{source} does not exist (from {url})",
                                hint=f"check MAMMOCLI_WEIGHTS_URL; {WAYS_OUT}")
        shutil.copyfile(source, tmp)
        return
    headers = {"User-Agent": f"mammocli/{__version__}",
               # raw bytes, so Content-Length can be checked against what arrived
               "Accept-Encoding": "identity"}
    try:
        # requests reads HTTP(S)_PROXY / NO_PROXY and REQUESTS_CA_BUNDLE from the environment.
        with requests.get(url, stream=True, timeout=(timeout, timeout), headers=headers) as resp:
            if resp.status_code in (404, 410):
                raise DownloadError(
                    f"{url} does not exist (HTTP {resp.status_code})",
                    hint="check MAMMOCLI_WEIGHTS_URL: a mirror must keep the paths of the "
                         "authors' repository (models/<file>, sample_data/images/<file>); "
                         f"{WAYS_OUT}",
                )
            if resp.status_code in _TRANSIENT_STATUS:
                raise _Transient(f"HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise DownloadError(f"{url} answered HTTP {resp.status_code} {resp.reason}",
                                    hint=f"check MAMMOCLI_WEIGHTS_URL and proxy settings; "
                                         f"{WAYS_OUT}")
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if bar is not None:
                bar.reset(total)
            written = 0
            with tmp.open("wb") as fh:
                for chunk in resp.iter_content(_CHUNK):
                    fh.write(chunk)
                    written += len(chunk)
                    if bar is not None:
                        bar.advance(len(chunk))
    except (requests.ConnectionError, requests.Timeout,
            requests.exceptions.ChunkedEncodingError) as exc:
        raise _Transient(type(exc).__name__) from exc
    if total is not None and written != total:  # urllib3 usually catches this already
        raise _Transient(f"truncated transfer: {written} of {total} bytes")


@contextmanager
def _quiet_pooch() -> Iterator[None]:
    # pooch logs every download itself; ours (with the licence note) is enough.
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def fetch_entry(entry: Entry, target: Path, *, registry: Registry,
                settings: Settings | None = None, progress: bool = True,
                retry: RetryPolicy | None = None) -> Path:
    """Return `target` holding the verified file of `entry`, downloading it if needed."""
    settings = settings or load_settings()
    if _verified(entry, target, settings):
        return target
    if settings.offline:
        raise WeightsError(
            f"{entry.name} is not in the cache ({target}) and MAMMOCLI_OFFLINE=1 forbids "
            "downloading it",
            hint=f"copy {entry.name} from a machine that has it (`mammocli weights path` there) "
                 f"and run `mammocli weights import FILE`, pass --weights-dir DIR, or unset "
                 f"MAMMOCLI_OFFLINE; details: `{GUIDE_COMMAND}`",
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the cache folder {target.parent}: {exc.strerror}",
                           hint="set MAMMOCLI_CACHE_DIR to a writable folder") from exc
    url = registry.url(entry, settings.weights_url)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if _verified(entry, target, settings):  # another process fetched it while we waited
            return target
        origin = f" (from {registry.repository})" if registry.repository else ""
        log.info("downloading %s from %s\n  licence: %s%s; offline use: `%s`", entry.name,
                 url, entry.licence, origin, GUIDE_COMMAND)
        store = pooch.create(path=target.parent, base_url=registry.base_url,
                             registry={target.name: None}, urls={target.name: url},
                             retry_if_failed=0)  # retries happen inside our downloader
        downloader = GitBlobDownloader(entry, retry or RetryPolicy.from_settings(settings),
                                       progress)
        with _quiet_pooch():
            store.fetch(target.name, downloader=downloader)
    return target


def _verified(entry: Entry, target: Path, settings: Settings) -> bool:
    """True if `target` holds the right bytes. A corrupt cached file is removed so it is fetched
    again (or, offline, reported as missing)."""
    if not target.is_file():
        return False
    problem = verification_problem(entry, target)
    if problem is None:
        return True
    log.warning("cached %s fails verification (%s); removing it", target, problem)
    target.unlink(missing_ok=True)
    return False


def resolve_weights(name: str, *, weights_dir: Path | None = None, progress: bool = True,
                    registry: Registry | None = None) -> Path:
    """The local path of weights `name` (canonical file name, alias, or a user-registered name).

    With `weights_dir`: the file under its official name in that folder, not hash-checked (users
    may point at their own trained or test weights); a file the folder lacks (a training export
    holds only the model it trained) comes from the cache as without it. Otherwise the verified
    file in the cache, downloaded on first use; user-registered weights are checked against
    their recorded SHA-256. The result's `weights` list records each file's path and SHA-256.
    """
    registry = registry or load_registry()
    if weights_dir is not None:
        weights_dir = Path(weights_dir)
        if not weights_dir.is_dir():
            raise WeightsError(
                f"--weights-dir {weights_dir} is not a folder",
                hint="give the folder that holds the weight files (e.g. a training run's "
                     "export/), or leave --weights-dir out to use the verified cache")
        try:
            file_name = registry.weight(name).name
        except WeightsError:
            file_name = name  # not an official name: take it as the file name
        path = weights_dir / file_name
        if path.is_file():
            return path
        # A training export holds only the model it trained: the rest comes from the cache.
        log.info("%s is not in --weights-dir %s; using the verified official file", file_name,
                 weights_dir)
    settings = load_settings()
    user = find_user_weights(name, settings)
    if user is not None:
        return verify_user_weights(user)
    entry = registry.weight(name)
    return fetch_entry(entry, weights_cache_dir(settings) / entry.name, registry=registry,
                       settings=settings, progress=progress)


def weights_used(name: str, path: Path) -> WeightsUsed:
    """The record of weights a result was computed with (name, SHA-256, path)."""
    return WeightsUsed(name=name, sha256=sha256_file(path), path=str(path))


def download_samples(*, progress: bool = True, registry: Registry | None = None,
                     dest: Path | None = None, names: Collection[str] | None = None) -> Path:
    """Fetch the authors' sample PNGs into `<dest or cache>/samples/<exam>/<file>`, verified
    (`names`: only these files). All or nothing: when one fails, the files and folders this call
    created are removed again (never anything that was there before), then the error is raised."""
    registry = registry or load_registry()
    settings = load_settings()
    root = dest or samples_cache_dir(settings)
    if not registry.samples:
        raise WeightsError(f"registry {registry.source} lists no sample files")
    entries = [e for e in registry.samples if names is None or e.name in names]
    targets = [sample_path(entry, root) for entry in entries]
    # What to undo on failure: files and folders (root and above included) not there yet.
    new_files = [t for t in targets if not t.exists()]
    new_dirs = sorted({d for t in targets for d in (t.parent, *t.parent.parents)
                       if not d.exists()},
                      key=lambda d: len(d.parts), reverse=True)
    try:
        for entry, target in zip(entries, targets, strict=True):
            fetch_entry(entry, target, registry=registry, settings=settings, progress=progress)
    except BaseException:  # also Ctrl-C: no half-filled sample folder either way
        _undo(new_files, new_dirs)
        raise
    return root


def _undo(files: list[Path], folders: list[Path]) -> None:
    for file in files:
        file.unlink(missing_ok=True)
        file.with_name(f".{file.name}.lock").unlink(missing_ok=True)
    for folder in folders:  # deepest first; only if empty (never someone else's file)
        try:
            folder.rmdir()
        except OSError:
            pass
