"""The shipped registry: pinned URLs, the SPEC's hashes, git-blob hashing, manifest overrides."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mammocli.errors import ConfigError, WeightsError
from mammocli.settings import DEFAULT_WEIGHTS_URL
from mammocli.weights import builtin_registry, git_blob_sha1, load_registry
from mammocli.weights.registry import PATCH

SPEC = Path(__file__).resolve().parents[2] / "shared" / "nyu" / "SPEC.md"
COMMIT = "6176ebea6950b0a953339593d2da417ab846dae0"


def test_every_url_is_pinned_to_the_commit_not_a_branch() -> None:
    registry = builtin_registry()
    assert registry.commit == COMMIT
    dmv = [e for e in registry.weights if e.repository is None]  # GMIC: test_gmic_registry.py
    samples = [e for e in registry.samples if e.repository is None]  # GMIC: its own commit
    entries = dmv + samples
    assert len(dmv) == 5 and len(samples) == 16
    for entry in entries:
        url = registry.url(entry)
        match = re.fullmatch(r"https://github\.com/nyukat/breast_cancer_classifier/raw/"
                             r"([0-9a-f]{40})/(models|sample_data/images)/[\w.]+", url)
        assert match, url
        assert match.group(1) == COMMIT
        assert not re.search(r"/(main|master|HEAD)/", url)
        assert entry.licence == "AGPL-3.0"
    assert COMMIT in DEFAULT_WEIGHTS_URL


def test_roles_aliases_and_lookup() -> None:
    registry = builtin_registry()
    assert [e.alias for e in registry.weights] == [
        "patch", "view-image", "view-imageheatmaps", "image-image", "image-imageheatmaps",
        "gmic-1", "gmic-2", "gmic-3", "gmic-4", "gmic-5"]
    assert registry.weight("patch").name == PATCH == registry.weight(PATCH).name
    with pytest.raises(WeightsError, match="unknown weights"):
        registry.weight("nope")


def test_hashes_match_the_spec() -> None:
    if not SPEC.is_file():
        pytest.skip(f"{SPEC} not found")
    text = SPEC.read_text()
    listed = dict(re.findall(r"\| `(?:models/|)([\w.]+\.(?:p|png))` \| `([0-9a-f]{40})`", text))
    registry = builtin_registry()
    for entry in [e for e in registry.weights + registry.samples if e.repository is None]:
        assert listed[entry.name] == entry.git_sha1, entry.name


def test_samples_form_four_exam_folders() -> None:
    samples = builtin_registry().samples
    for i in range(4):
        names = sorted(e.name for e in samples if e.exam == f"exam_{i}")
        assert names == sorted(f"{i}_{s}_{v}.png" for s in "LR" for v in ("CC", "MLO"))


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
@pytest.mark.parametrize("content", [b"", b"hello\n", bytes(range(256)) * 1000])
def test_git_blob_sha1_equals_git_hash_object(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert git_blob_sha1(path) == expected


def test_manifest_override_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text('{"base_url": "http://mirror.local/x/", "weights": [{"name": "a.p", '
                        '"path": "models/a.p", "git_sha1": "' + "a" * 40 + '", "licence": "t"}]}')
    monkeypatch.setenv("MAMMOCLI_REGISTRY", str(manifest))
    registry = load_registry()
    assert [e.name for e in registry.weights] == ["a.p"] and registry.samples == ()
    assert registry.url(registry.weights[0]) == "http://mirror.local/x/models/a.p"
    assert registry.url(registry.weights[0], "http://other/") == "http://other/models/a.p"
    manifest.write_text('{"weights": [{"name": "a.p", "path": "a", "git_sha1": "xyz", '
                        '"licence": "t"}]}')
    with pytest.raises(ConfigError, match="git_sha1"):
        load_registry()
    monkeypatch.setenv("MAMMOCLI_REGISTRY", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="cannot read registry"):
        load_registry()


@pytest.mark.network
def test_real_download_of_one_sample(tmp_path: Path) -> None:
    """Real GitHub download (off by default: `pytest -m network`)."""
    from mammocli.weights import fetch_entry

    registry = builtin_registry()
    entry = registry.samples[0]
    path = fetch_entry(entry, tmp_path / entry.name, registry=registry, progress=False)
    assert git_blob_sha1(path) == entry.git_sha1
