"""Help that reads well: every predict/heatmaps option described, no `<bool>` after flags, no
help text that rich would swallow as markup, defaults that match the words."""

from __future__ import annotations

import re
from typing import Any

import pytest
from typer.testing import CliRunner

from mammocli.cli.app import COMMANDS, app, load_command

runner = CliRunner()


def _leaves(command: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    subs = getattr(command, "commands", None)
    if not subs:
        return [(path, command)]
    return [leaf for name, sub in subs.items() for leaf in _leaves(sub, (*path, name))]


LEAVES = [leaf for name in COMMANDS for leaf in _leaves(load_command(name), (name,))]


@pytest.mark.parametrize("command", ["predict", "heatmaps"])
def test_every_option_of_predict_and_heatmaps_has_help(command: str) -> None:
    params = load_command(command).params
    missing = [p.name for p in params if not (getattr(p, "help", None) or "").strip()]
    assert params and missing == []


@pytest.mark.parametrize("path", [p for p, _ in LEAVES], ids=" ".join)
def test_help_shows_no_bool_type_and_no_zero_threads_default(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "<bool>" not in result.output
    if "--threads" in result.output:
        block = result.output.split("--threads", 1)[1].split("│ --", 1)[0]
        assert "[default: 0]" not in block and "all the CPUs" in block


def test_root_help_shows_no_bool_type() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert "--version" in result.output and "<bool>" not in result.output


def test_no_help_text_is_read_as_rich_markup() -> None:
    """`[default: 0.5]` in a help string vanishes from the rendered help (rich takes it for a
    style tag): such text must be written without a bracket before a letter."""
    markup = re.compile(r"\[[A-Za-z#/@]")
    found = [(path, p.name) for path, command in LEAVES for p in command.params
             if markup.search(getattr(p, "help", None) or "")]
    assert found == []
