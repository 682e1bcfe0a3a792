"""The CLI starts without torch, scikit-learn or matplotlib: `--version` and `--help` need
none of them (they took ~11 s when every command module imported them at start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer

from mammocli.cli.app import COMMANDS, load_command

HEAVY = ("torch", "sklearn", "matplotlib", "scipy", "numpy")


def _child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args] if args else [sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_importing_the_app_imports_no_heavy_library() -> None:
    child = _child("import json, sys\nimport mammocli.cli.app\n"
                   f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == []


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("weights", "--help"),
                                  ("info", "--help")])
def test_version_and_help_run_without_heavy_libraries(args: tuple[str, ...]) -> None:
    code = ("import runpy, sys, json, atexit\n"
            f"sys.argv = ['mammocli', *{list(args)!r}]\n"
            f"atexit.register(lambda: print(json.dumps([m for m in {HEAVY!r} "
            "if m in sys.modules]), file=sys.stderr))\n"
            "runpy.run_module('mammocli', run_name='__main__')\n")
    child = _child(code)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stderr.strip().splitlines()[-1]) == []
    if args == ("--version",):
        assert child.stdout.startswith("mammocli ")
    else:
        assert "Usage" in child.stdout


def test_python_m_mammocli_version_runs() -> None:
    child = _child("", "-m", "mammocli", "--version")
    assert child.returncode == 0 and child.stdout.startswith("mammocli "), child.stderr


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_root_help_lines_are_the_commands_own(name: str) -> None:
    """The root help lists commands from `COMMANDS` without importing them: each line must
    be its command's own first help paragraph (the real command is loaded here)."""
    command = load_command(name)
    assert command.name == name
    own = " ".join((command.help or "").split("\n\n")[0].split())
    listed = COMMANDS[name][1]
    assert own.startswith(listed.rstrip(".")) or listed.startswith(own), (own, listed)


def test_root_lists_every_registered_command() -> None:
    group = typer.main.get_group(__import__("mammocli.cli.app", fromlist=["app"]).app)
    assert list(group.commands) == list(COMMANDS)
