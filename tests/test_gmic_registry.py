"""The five GMIC registry entries (pinned to nyukat/GMIC 594029e, SPEC 11.1) and the size and
SHA-256 checks they add to the git blob SHA-1, against a loopback mirror."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from _weights_mirror import blob_sha1, cache_dir, leftovers
from pytest_httpserver import HTTPServer

from mammocli.errors import WeightsError
from mammocli.weights import builtin_registry, resolve_weights

GMIC_SPEC = Path(__file__).resolve().parents[2] / "shared" / "gmic" / "SPEC.md"
GMIC_COMMIT = "594029efe6184bcca3a151fa1dd46c5fd620cb25"


def _gmic_entries():  # type: ignore[no-untyped-def]
    return [e for e in builtin_registry().weights if e.repository == "nyukat/GMIC"]


def test_five_gmic_entries_pinned_to_their_own_commit() -> None:
    registry = builtin_registry()
    entries = _gmic_entries()
    assert [e.alias for e in entries] == [f"gmic-{i}" for i in range(1, 6)]
    for i, entry in enumerate(entries, start=1):
        assert entry.name == f"sample_model_{i}.p" and entry.commit == GMIC_COMMIT
        assert registry.url(entry) == (f"https://raw.githubusercontent.com/nyukat/GMIC/"
                                       f"{GMIC_COMMIT}/models/sample_model_{i}.p")
        assert entry.licence == "AGPL-3.0" and entry.size == 60740040
        # A mirror keeps the path: the DMV-CNN files and these never share a name.
        assert registry.url(entry, "http://mirror/") == f"http://mirror/models/{entry.name}"


def test_gmic_hashes_match_the_spec() -> None:
    if not GMIC_SPEC.is_file():
        pytest.skip(f"{GMIC_SPEC} not found (needs ../shared/gmic)")
    rows = re.findall(r"\| `models/(sample_model_\d\.p)` \| `([0-9a-f]{40})` \| `([0-9a-f]{64})` "
                      r"\| (\d+) \|", GMIC_SPEC.read_text())
    assert len(rows) == 5
    by_name = {e.name: e for e in _gmic_entries()}
    for name, sha1, sha256, size in rows:
        entry = by_name[name]
        assert (entry.git_sha1, entry.sha256, entry.size) == (sha1, sha256, int(size))


def _mirror_one(tmp_path: Path, server: HTTPServer, monkeypatch: pytest.MonkeyPatch,
                served: bytes, **recorded: object) -> None:
    """Serve `served` as models/sample_model_1.p; the registry records the given hashes."""
    entry = {"name": "sample_model_1.p", "alias": "gmic-1", "path": "models/sample_model_1.p",
             "git_sha1": blob_sha1(served), "licence": "AGPL-3.0",
             "repository": "nyukat/GMIC", "commit": GMIC_COMMIT,
             "base_url": "http://unused.invalid/", **recorded}
    manifest = tmp_path / "registry.json"
    manifest.write_text(json.dumps({"commit": "0" * 40, "weights": [entry], "samples": []}))
    server.expect_request("/models/sample_model_1.p").respond_with_data(served)
    monkeypatch.setenv("MAMMOCLI_REGISTRY", str(manifest))
    monkeypatch.setenv("MAMMOCLI_WEIGHTS_URL", server.url_for("/"))
    monkeypatch.setenv("MAMMOCLI_DOWNLOAD_RETRIES", "0")


def test_all_three_checks_pass_and_the_file_is_cached(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"gmic weights" * 5000
    _mirror_one(tmp_path, httpserver, monkeypatch, data, size=len(data),
                sha256=hashlib.sha256(data).hexdigest())
    path = resolve_weights("gmic-1", progress=False)
    assert path == cache_dir() / "sample_model_1.p" and path.read_bytes() == data


@pytest.mark.parametrize("recorded, expected", [
    ({"sha256": "0" * 64}, "expected SHA-256 " + "0" * 64),
    ({"size": 123}, "expected 123 bytes"),
])
def test_right_sha1_but_wrong_sha256_or_size_is_refused_with_nothing_cached(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch,
        recorded: dict[str, object], expected: str) -> None:
    data = b"other bytes" * 5000
    _mirror_one(tmp_path, httpserver, monkeypatch, data, **recorded)
    with pytest.raises(WeightsError, match="failed verification") as info:
        resolve_weights("gmic-1", progress=False)
    assert expected in str(info.value) and "nothing was cached" in str(info.value)
    assert not (cache_dir() / "sample_model_1.p").exists()
    assert leftovers(cache_dir()) == []


def test_cached_file_failing_the_sha256_is_removed_and_fetched_again(
        tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"gmic weights" * 5000
    _mirror_one(tmp_path, httpserver, monkeypatch, data, size=len(data),
                sha256=hashlib.sha256(data).hexdigest())
    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / "sample_model_1.p").write_bytes(b"corrupt")
    assert resolve_weights("gmic-1", progress=False).read_bytes() == data
