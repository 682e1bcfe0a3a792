"""`mammocli weights ...` through CliRunner: import, list, verify, path, remove, register."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _weights_mirror import Mirror, cache_dir, leftovers, make_mirror
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.errors import WeightsError
from mammocli.weights import load_registry, resolve_weights

PATCH = "sample_patch_model.p"
runner = CliRunner()


@pytest.fixture
def mirror(tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Mirror:
    return make_mirror(tmp_path, httpserver, monkeypatch)


def _listing() -> dict[str, dict[str, object]]:
    result = runner.invoke(app, ["weights", "list", "--json"])
    assert result.exit_code == 0, result.stderr
    return {w["name"]: w for w in json.loads(result.stdout)["official"]}


def test_import_list_verify_remove(tmp_path: Path, mirror: Mirror,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    renamed = tmp_path / "from_usb_stick.bin"  # matched by hash, not by name
    renamed.write_bytes(mirror.files[PATCH])
    assert _listing()[PATCH]["cached"] is False

    result = runner.invoke(app, ["weights", "import", str(renamed)])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["name"] == PATCH
    assert (cache_dir() / PATCH).read_bytes() == mirror.files[PATCH]
    assert leftovers(cache_dir()) == []
    row = _listing()[PATCH]
    assert row["cached"] is True and row["verified"] is True
    assert row["size"] == len(mirror.files[PATCH]) and row["role"] == "test"

    # Imported files are used offline with no request.
    monkeypatch.setenv("MAMMOCLI_OFFLINE", "1")
    assert resolve_weights("patch", progress=False) == cache_dir() / PATCH
    assert len(mirror.server.log) == 0

    assert runner.invoke(app, ["weights", "verify"]).exit_code == 0
    (cache_dir() / PATCH).write_bytes(b"tampered")
    bad = runner.invoke(app, ["weights", "verify"])
    assert bad.exit_code == 4 and "FAILED" in bad.stderr

    removed = runner.invoke(app, ["weights", "remove", "patch"])
    assert removed.exit_code == 0 and json.loads(removed.stdout) == {"removed": [PATCH]}
    assert not (cache_dir() / PATCH).exists()
    assert runner.invoke(app, ["weights", "remove"]).exit_code != 0  # needs NAME or --all


def test_import_of_unknown_file_exits_4(tmp_path: Path, mirror: Mirror) -> None:
    other = tmp_path / "other.p"
    other.write_bytes(b"something else")
    result = runner.invoke(app, ["weights", "import", str(other)])
    assert result.exit_code == 4
    assert "not one of the official weight files" in result.stderr
    assert not cache_dir().exists() or leftovers(cache_dir()) == []


def test_path_command(mirror: Mirror) -> None:
    assert runner.invoke(app, ["weights", "path"]).stdout.strip() == str(cache_dir())
    out = runner.invoke(app, ["weights", "path", "patch"]).stdout.strip()
    assert out == str(cache_dir() / PATCH)
    assert runner.invoke(app, ["weights", "path", "nope"]).exit_code == 4


def test_register_user_weights(tmp_path: Path, mirror: Mirror) -> None:
    mine = tmp_path / "finetuned.pt"
    mine.write_bytes(b"trained here")
    result = runner.invoke(app, ["weights", "register", "my-patch", str(mine)])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sha256"]
    assert resolve_weights("my-patch") == mine.resolve()
    listed = json.loads(runner.invoke(app, ["weights", "list", "--json"]).stdout)["user"]
    assert [u["name"] for u in listed] == ["my-patch"]
    # A changed file no longer matches the recorded hash.
    mine.write_bytes(b"changed")
    with pytest.raises(WeightsError, match="changed since registration"):
        resolve_weights("my-patch")
    assert runner.invoke(app, ["weights", "verify"]).exit_code == 4
    # Official names are reserved.
    assert runner.invoke(app, ["weights", "register", "patch", str(mine)]).exit_code == 2
    assert runner.invoke(app, ["weights", "remove", "my-patch"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["weights", "list", "--json"]).stdout)["user"] == []


def test_table_goes_to_stderr_and_download_prints_json(mirror: Mirror) -> None:
    mirror.serve_all()
    result = runner.invoke(app, ["weights", "list"])
    assert result.exit_code == 0 and result.stdout == "" and "patch" in result.stderr
    result = runner.invoke(app, ["weights", "download"])
    assert result.exit_code == 0, result.stderr
    assert [w["name"] for w in json.loads(result.stdout)] == list(mirror.files)
    assert "licence" in result.stderr  # the licence note is shown at download


def test_installed_entry_point_runs(mirror: Mirror) -> None:
    script = Path(sys.executable).with_name("mammocli")
    result = subprocess.run([str(script), "weights", "path", "patch"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(cache_dir() / PATCH)


def test_import_of_a_sample_image_goes_to_its_exam_folder(tmp_path: Path,
                                                          mirror: Mirror) -> None:
    name, data = next(iter(mirror.samples.items()))
    copy = tmp_path / "copy.png"
    copy.write_bytes(data)
    result = runner.invoke(app, ["weights", "import", str(copy)])
    assert result.exit_code == 0, result.stderr
    target = cache_dir().parent / "samples" / f"exam_{name[0]}" / name
    assert target.read_bytes() == data


def test_verify_one_user_weights_by_name(tmp_path: Path, mirror: Mirror) -> None:
    mine = tmp_path / "w.pt"
    mine.write_bytes(b"x")
    assert runner.invoke(app, ["weights", "register", "mine", str(mine)]).exit_code == 0
    result = runner.invoke(app, ["weights", "verify", "mine"])
    assert result.exit_code == 0, result.stderr
    assert [r["name"] for r in json.loads(result.stdout)] == ["mine"]


def test_list_when_not_a_terminal_is_plain_and_never_cut(tmp_path: Path) -> None:
    """CliRunner's stderr is no terminal, as in a pipe or a CI log: one tab-separated line
    per file, full names and paths however long (a table would cut them to 80 columns)."""
    deep = tmp_path / ("a-folder-with-a-long-name-" * 4) / "my[bold]weights.pt"
    deep.parent.mkdir()
    deep.write_bytes(b"weights")
    assert runner.invoke(app, ["weights", "register", "mine[/]", str(deep)]).exit_code == 0
    result = runner.invoke(app, ["weights", "list", "--no-verify"])
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].split("\t") == ["name", "role", "cached", "verified", "size", "path",
                                    "licence"]
    rows = {fields[0]: fields for fields in (ln.split("\t") for ln in lines[1:])}
    official = load_registry().weights
    assert {e.alias or e.name for e in official} <= set(rows)
    assert all(rows[e.alias or e.name][5].endswith(e.name) for e in official)
    assert rows["mine[/]"][5] == str(deep.resolve())
    assert "…" not in result.stderr
    assert all(len(fields) == 7 for fields in rows.values())


def test_verify_with_nothing_cached_fails_and_says_what_to_do(mirror: Mirror) -> None:
    result = runner.invoke(app, ["weights", "verify"])
    assert result.exit_code == 4  # the documented weights exit code, never 0
    assert all(r["cached"] is False for r in json.loads(result.stdout))  # status still given
    message = " ".join(result.stderr.split())
    assert "nothing to verify" in message and "mammocli weights download" in message
    assert "mammocli weights import" in message and "mammocli weights help" in message
    # A file named but not cached is not "verified" either, even when others are.
    (cache_dir()).mkdir(parents=True, exist_ok=True)
    (cache_dir() / PATCH).write_bytes(mirror.files[PATCH])
    named = runner.invoke(app, ["weights", "verify", "patch", "view-image"])
    assert named.exit_code == 4
    assert "not cached, so not verified: sample_image_model.p" in " ".join(named.stderr.split())
    assert runner.invoke(app, ["weights", "verify", "patch"]).exit_code == 0
    assert runner.invoke(app, ["weights", "verify"]).exit_code == 0  # something was checked
