"""The README's quickstart, run verbatim: the block after `<!-- quickstart -->`, line by line,
in an empty working folder, with the weights downloaded from a loopback mirror of random
weights (MAMMOCLI_WEIGHTS_URL), as a user's first run downloads the official ones."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest
from _weights_mirror import make_file_mirror
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from mammocli.cli.app import app

REPO = Path(__file__).resolve().parents[1]


def quickstart_lines() -> list[list[str]]:
    text = (REPO / "README.md").read_text("utf-8")
    match = re.search(r"<!-- quickstart -->\n```[a-z]*\n(.*?)```", text, re.S)
    assert match, "README: no code block after <!-- quickstart -->"
    lines = [shlex.split(line, comments=True) for line in match.group(1).splitlines()]
    return [words for words in lines if words]


def outputs_of(words: list[str]) -> list[Path]:
    """The files and folders a command line names as its outputs."""
    return [Path(words[i + 1]) for i, w in enumerate(words[:-1])
            if w in ("-o", "--output", "--csv")]


def check_parses(path: Path) -> None:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    assert files, f"{path} is empty"
    for file in files:
        if file.name.startswith("."):
            continue
        text = file.read_text("utf-8")
        if file.suffix == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
            assert rows, f"{file}: no rows"
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()] \
                if file.suffix == ".jsonl" else [json.loads(text)]
            assert records and all(r.get("status") != "failed" for r in records), file


def test_the_quickstart_runs_as_written(tmp_path: Path, httpserver: HTTPServer,
                                        random_weights: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mirror").mkdir()
    make_file_mirror(tmp_path / "mirror", httpserver, monkeypatch,
                     weights=sorted(random_weights.iterdir()), samples={})
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    lines = quickstart_lines()
    assert [w[:2] for w in lines][:2] == [["mammocli", "examples"], ["mammocli", "predict"]]
    commands = {w[1] for w in lines}
    assert {"examples", "predict", "evaluate", "hybrid", "train"} <= commands
    runner = CliRunner()
    for words in lines:
        assert words[0] == "mammocli", words
        result = runner.invoke(app, words[1:])
        assert result.exit_code == 0, (words, result.stderr, result.stdout)
        for output in outputs_of(words):
            assert output.exists(), (words, output)
            check_parses(output)
        if words[1] == "train":
            summary = json.loads(result.stdout)
            assert Path(summary["export"]).is_file()
    assert len(list(Path("results/root").glob("*.json"))) == 4
    exam = json.loads(Path("results/exam.json").read_text())
    assert exam["tta"] == 10 and exam["predictions"]["image_and_heatmaps"]
    # the weights came from the mirror, as a first run's download
    assert any(req.path.endswith("sample_patch_model.p") for req, _ in httpserver.log)
