"""The layering is a checked contract (import-linter, contracts in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytest.importorskip("importlinter")
tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PACKAGE = REPO / "mammocli"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the package under `root` with the contracts of `root`/pyproject.toml."""
    env = dict(os.environ, PYTHONPATH=str(root))
    code = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"
    return subprocess.run([sys.executable, "-c", code, "--no-cache", "--no-logo",
                           str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def _contracts() -> list[dict[str, object]]:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts: list[dict[str, object]] = doc["tool"]["importlinter"]["contracts"]
    return contracts


def test_the_layering_contract_holds() -> None:
    run = _lint(REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_every_part_of_the_package_has_a_layer() -> None:
    layers = next(c for c in _contracts() if c["id"] == "layers")["layers"]
    assert isinstance(layers, list)
    placed = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    parts = {f"mammocli.{p.stem}" for p in PACKAGE.glob("*.py")
             if p.stem not in ("__init__", "__main__")}
    parts |= {f"mammocli.{p.name}" for p in PACKAGE.iterdir()
              if (p / "__init__.py").is_file() and p.name != "outputs"}
    # outputs/ spans two layers, so each of its modules is placed on its own
    parts |= {f"mammocli.outputs.{p.stem}" for p in (PACKAGE / "outputs").glob("*.py")
              if p.stem != "__init__"}
    assert sorted(parts - placed) == []
    assert sorted(placed - parts) == []  # no stale names either


def test_the_contract_catches_a_library_module_that_renders(tmp_path: Path) -> None:
    # A copy of the package where io/ imports the console: the contract must break, naming it.
    shutil.copytree(PACKAGE, tmp_path / "mammocli",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    load = tmp_path / "mammocli" / "io" / "load.py"
    load.write_text(load.read_text() + "\nfrom ..console import say  # noqa: E402\n")
    run = _lint(tmp_path)
    assert run.returncode != 0
    assert "mammocli.io is not allowed to import mammocli.console" in run.stdout
    assert "mammocli.io.load -> mammocli.console" in run.stdout
