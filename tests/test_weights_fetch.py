"""Download, verification and cache, against a real HTTP server on loopback."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _weights_mirror import Mirror, blob_sha1, cache_dir, leftovers, make_mirror
from pytest_httpserver import HTTPServer
from rich.console import Console
from typer.testing import CliRunner
from werkzeug import Request, Response

from mammocli import console
from mammocli.cli.app import app
from mammocli.errors import DownloadError
from mammocli.weights import resolve_weights, sha256_file, weights_used

PATCH = "sample_patch_model.p"


@pytest.fixture
def mirror(tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Mirror:
    return make_mirror(tmp_path, httpserver, monkeypatch)


def test_good_file_is_cached_verified_and_not_fetched_again(mirror: Mirror) -> None:
    mirror.serve(PATCH)
    path = resolve_weights("patch", progress=False)
    assert path == cache_dir() / PATCH
    assert path.read_bytes() == mirror.files[PATCH]
    assert mirror.requests_for(PATCH) == 1
    assert resolve_weights(PATCH, progress=False) == path  # canonical name works too
    assert mirror.requests_for(PATCH) == 1
    assert leftovers(cache_dir()) == []
    used = weights_used("patch", path)
    assert used.sha256 == sha256_file(path) and used.path == str(path)


def test_wrong_bytes_nothing_cached_exit_4_names_file_and_hashes(mirror: Mirror) -> None:
    bad = b"not the weights" * 1000
    mirror.server.expect_request(mirror.uri(PATCH)).respond_with_data(bad)
    result = CliRunner().invoke(app, ["weights", "download", "patch"])
    assert result.exit_code == 4
    message = " ".join(result.stderr.split())  # undo any console wrapping
    assert PATCH in message
    assert blob_sha1(mirror.files[PATCH]) in message and blob_sha1(bad) in message
    assert not (cache_dir() / PATCH).exists()
    assert leftovers(cache_dir()) == []


def _truncated(data: bytes) -> Response:
    # Announce the full length, send half, close: what a dropped connection looks like.
    # (an iterable body, so werkzeug keeps our Content-Length instead of recomputing it)
    return Response(iter([data[: len(data) // 2]]), headers={"Content-Length": str(len(data))},
                    content_type="application/octet-stream", direct_passthrough=True)


def test_truncated_transfer_is_retried_and_never_cached(mirror: Mirror) -> None:
    mirror.server.expect_oneshot_request(mirror.uri(PATCH)).respond_with_response(
        _truncated(mirror.files[PATCH]))
    mirror.serve(PATCH)
    path = resolve_weights("patch", progress=False)
    assert path.read_bytes() == mirror.files[PATCH]
    assert mirror.requests_for(PATCH) == 2
    assert leftovers(cache_dir()) == []


def test_truncated_every_time_fails_with_no_partial_file(mirror: Mirror) -> None:
    mirror.server.expect_request(mirror.uri(PATCH)).respond_with_handler(
        lambda request: _truncated(mirror.files[PATCH]))
    with pytest.raises(DownloadError, match="after 3 attempts"):
        resolve_weights("patch", progress=False)
    assert mirror.requests_for(PATCH) == 3  # 1 + MAMMOCLI_DOWNLOAD_RETRIES=2
    assert not (cache_dir() / PATCH).exists()
    assert leftovers(cache_dir()) == []


def test_http_500_is_retried(mirror: Mirror) -> None:
    mirror.server.expect_oneshot_request(mirror.uri(PATCH)).respond_with_data("oops", status=500)
    mirror.server.expect_oneshot_request(mirror.uri(PATCH)).respond_with_data("oops", status=503)
    mirror.serve(PATCH)
    assert resolve_weights("patch", progress=False).read_bytes() == mirror.files[PATCH]
    assert mirror.requests_for(PATCH) == 3


def test_http_500_for_good_exits_4_with_nothing_cached(mirror: Mirror) -> None:
    mirror.server.expect_request(mirror.uri(PATCH)).respond_with_data("oops", status=500)
    result = CliRunner().invoke(app, ["weights", "download", "patch"])
    assert result.exit_code == 4
    assert "HTTP 500" in result.stderr and PATCH in result.stderr
    assert not (cache_dir() / PATCH).exists() and leftovers(cache_dir()) == []


def test_404_is_a_clear_error_without_retries(mirror: Mirror) -> None:
    mirror.server.expect_request(mirror.uri(PATCH)).respond_with_data("nope", status=404)
    with pytest.raises(DownloadError) as info:
        resolve_weights("patch", progress=False)
    assert "404" in info.value.message and mirror.uri(PATCH) in info.value.message
    assert "MAMMOCLI_WEIGHTS_URL" in (info.value.hint or "")
    assert mirror.requests_for(PATCH) == 1
    assert not (cache_dir() / PATCH).exists()


def test_offline_with_cached_file_makes_no_request(mirror: Mirror,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    mirror.serve(PATCH)
    path = resolve_weights("patch", progress=False)
    monkeypatch.setenv("MAMMOCLI_OFFLINE", "1")
    mirror.server.clear_log()
    assert resolve_weights("patch", progress=False) == path
    assert len(mirror.server.log) == 0


def test_offline_without_file_exits_4_with_import_hint(mirror: Mirror,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMMOCLI_OFFLINE", "1")
    mirror.serve(PATCH)
    result = CliRunner().invoke(app, ["weights", "download", "patch"])
    assert result.exit_code == 4
    assert PATCH in result.stderr and "mammocli weights import FILE" in result.stderr
    assert len(mirror.server.log) == 0


def test_corrupt_cached_file_is_fetched_again(mirror: Mirror) -> None:
    mirror.serve(PATCH)
    target = cache_dir() / PATCH
    target.parent.mkdir(parents=True)
    target.write_bytes(b"bit rot")
    assert resolve_weights("patch", progress=False).read_bytes() == mirror.files[PATCH]


def test_weights_dir_takes_official_name_without_hash_check(tmp_path: Path,
                                                             mirror: Mirror) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / PATCH).write_bytes(b"my own trained weights")
    assert resolve_weights("patch", weights_dir=folder) == folder / PATCH
    assert len(mirror.server.log) == 0
    # A file the folder lacks (a training export holds only its model) comes from the cache.
    mirror.serve("sample_image_model.p")
    image = resolve_weights("view-image", weights_dir=folder, progress=False)
    assert image == cache_dir() / "sample_image_model.p"
    assert image.read_bytes() == mirror.files["sample_image_model.p"]
    assert mirror.requests_for(PATCH) == 0


def _ways_out(text: str, guide: bool = True) -> None:
    text = " ".join(text.split())
    for way in ("--weights-dir", "MAMMOCLI_WEIGHTS_URL", "MAMMOCLI_OFFLINE=1",
                "mammocli weights import", *(["mammocli weights help"] if guide else [])):
        assert way in text, way


def test_download_failures_name_every_way_out(tmp_path: Path, mirror: Mirror,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    mirror.server.expect_request(mirror.uri(PATCH)).respond_with_data("gone", status=404)
    with pytest.raises(DownloadError, match="HTTP 404") as missing:
        resolve_weights("patch", progress=False)
    _ways_out(missing.value.hint or "")
    mirror.server.expect_request(mirror.uri("sample_image_model.p")).respond_with_data(
        "busy", status=503)
    with pytest.raises(DownloadError, match="after 3 attempts") as busy:
        resolve_weights("view-image", progress=False)
    _ways_out(busy.value.hint or "")
    monkeypatch.setenv("MAMMOCLI_WEIGHTS_URL", (tmp_path / "no-mirror").as_uri() + "/")
    with pytest.raises(DownloadError, match="does not exist") as no_file:
        resolve_weights("patch", progress=False)
    _ways_out(no_file.value.hint or "")
    # The command the hints point to prints the guide from the installed package.
    guide = CliRunner().invoke(app, ["weights", "help"])
    assert guide.exit_code == 0
    _ways_out(guide.stdout, guide=False)
    assert "mammocli weights download" in guide.stdout and "file:///" in guide.stdout


def test_progress_bar_goes_to_stderr_console(mirror: Mirror,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=buffer, force_terminal=True, width=100))
    mirror.serve(PATCH)
    resolve_weights("patch", progress=True)
    assert PATCH in buffer.getvalue()


def test_a_download_off_a_terminal_logs_a_line_per_10_percent(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    big = make_mirror(tmp_path, httpserver, monkeypatch, size=1_000_000)  # 16 chunks of 64 KiB
    buffer = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=buffer, force_terminal=False, width=200))
    big.serve(PATCH)
    resolve_weights("patch", progress=True)
    assert buffer.getvalue().splitlines() == [
        f"{PATCH}: {pct} % of 1.0 MiB" for pct in range(10, 101, 10)]
    buffer.truncate(0)
    big.serve("sample_image_model.p")
    resolve_weights("view-image", progress=False)  # --quiet
    assert buffer.getvalue() == ""


def test_two_processes_downloading_at_once_end_with_one_good_file(mirror: Mirror) -> None:
    data = mirror.files[PATCH]

    def slow(request: Request) -> Response:
        time.sleep(0.5)  # keep the first download in flight while the second process starts
        return Response(data, content_type="application/octet-stream")

    mirror.server.expect_request(mirror.uri(PATCH)).respond_with_handler(slow)
    code = "from mammocli.weights import resolve_weights; print(resolve_weights('patch', " \
           "progress=False))"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert {o[0].strip() for o in outs} == {str(cache_dir() / PATCH)}
    assert (cache_dir() / PATCH).read_bytes() == data
    assert leftovers(cache_dir()) == []
    assert mirror.requests_for(PATCH) == 1  # the lock made the second process wait and reuse


def test_sample_download_makes_exam_folders(mirror: Mirror) -> None:
    mirror.serve_all()
    result = CliRunner().invoke(app, ["sample", "download", "-q"])
    assert result.exit_code == 0, result.stderr
    root = Path(os.environ["MAMMOCLI_CACHE_DIR"]) / "samples"
    for name, data in mirror.samples.items():
        assert (root / f"exam_{name[0]}" / name).read_bytes() == data
    again = CliRunner().invoke(app, ["sample", "download", "-q"])
    assert again.exit_code == 0
    assert len(mirror.server.log) == len(mirror.samples)  # second run: all from the cache


def test_failed_sample_download_leaves_no_folder_behind(mirror: Mirror) -> None:
    names = list(mirror.samples)
    for name in names[:-1]:  # all but the last: that one fails (HTTP 404)
        mirror.server.expect_request(f"/sample_data/images/{name}").respond_with_data(
            mirror.samples[name])
    mirror.server.expect_request(f"/sample_data/images/{names[-1]}").respond_with_data(
        "no", status=404)
    result = CliRunner().invoke(app, ["sample", "download", "-q"])
    assert result.exit_code == 4 and "HTTP 404" in result.stderr
    assert not (Path(os.environ["MAMMOCLI_CACHE_DIR"]) / "samples").exists()


def test_failed_sample_download_keeps_what_was_there(tmp_path: Path, mirror: Mirror) -> None:
    names = list(mirror.samples)
    for name in names[:-1]:
        mirror.server.expect_request(f"/sample_data/images/{name}").respond_with_data(
            mirror.samples[name])
    mirror.server.expect_request(f"/sample_data/images/{names[-1]}").respond_with_data(
        "no", status=404)
    dest = tmp_path / "mine"
    first = dest / f"exam_{names[0][0]}"
    first.mkdir(parents=True)
    (first / "notes.txt").write_text("my notes")
    (first / names[0]).write_bytes(mirror.samples[names[0]])  # verified, there before
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    result = CliRunner().invoke(app, ["sample", "download", "-q", "--dest", str(dest)])
    assert result.exit_code == 4
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before
    assert (first / "notes.txt").read_text() == "my notes"
    nested = tmp_path / "new" / "deeper"
    assert CliRunner().invoke(app, ["sample", "download", "-q", "--dest", str(nested)]
                              ).exit_code == 4
    assert not (tmp_path / "new").exists()  # the folders it made for --dest too


def test_info_reports_weights_without_downloading(mirror: Mirror) -> None:
    mirror.serve(PATCH)
    resolve_weights("patch", progress=False)
    mirror.server.clear_log()
    import json

    result = CliRunner().invoke(app, ["info"])
    assert result.exit_code == 0
    status = {w["name"]: w for w in json.loads(result.stdout)["weights"]}
    assert status[PATCH]["cached"] is True and status[PATCH]["verified"] is True
    assert status["sample_image_model.p"]["cached"] is False
    assert len(mirror.server.log) == 0


def test_interrupted_download_leaves_nothing(mirror: Mirror,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mammocli.weights import fetch

    def interrupted(url: str, tmp: Path, *args: object) -> None:
        tmp.write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "_stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        resolve_weights("patch", progress=False)
    assert not (cache_dir() / PATCH).exists() and leftovers(cache_dir()) == []


def test_file_url_mirror_on_a_shared_drive(tmp_path: Path, mirror: Mirror,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    share = tmp_path / "share"
    (share / "models").mkdir(parents=True)
    (share / "models" / PATCH).write_bytes(mirror.files[PATCH])
    monkeypatch.setenv("MAMMOCLI_WEIGHTS_URL", share.as_uri() + "/")
    assert resolve_weights("patch", progress=False).read_bytes() == mirror.files[PATCH]
    with pytest.raises(DownloadError, match="does not exist"):
        resolve_weights("view-image", progress=False)
    assert len(mirror.server.log) == 0
