"""The library entry points: the README's Python example runs and gives what the CLI gives;
the predict command only parses, calls the library and renders."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mammocli
from mammocli.cli.app import app
from mammocli.errors import ConfigError
from mammocli.outputs.schema import ExamFailure, PredictionResult
from mammocli.synthetic.phantoms import write_exam

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(mammocli.__file__).parent


def readme_example() -> str:
    text = (REPO / "README.md").read_text("utf-8")
    section = text.split("### Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: the Python API section has no python example"
    return match.group(1)


def test_the_readme_example_runs_and_matches_the_cli(tmp_path: Path, random_weights: Path,
                                                     monkeypatch, capsys) -> None:
    write_exam(tmp_path / "exams" / "good", shape=(200, 150), seed=1)
    write_exam(tmp_path / "exams" / "broken", shape=(200, 150), seed=2)
    (tmp_path / "exams" / "broken" / "R_MLO.png").unlink()
    shutil.copytree(random_weights, tmp_path / "weights")
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "small_pipeline.yaml", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out.splitlines()
    records = namespace["records"]
    assert isinstance(records, list) and len(records) == 2
    by_id = {r.exam_id: r for r in records}
    assert isinstance(by_id["broken"], ExamFailure) and by_id["broken"].exit_code == 3
    good = by_id["good"]
    assert isinstance(good, PredictionResult) and good.family == "dmv-cnn"
    assert printed == [
        "broken failed: " + by_id["broken"].error,
        f"good {good.primary.left.malignant:.3f} {good.primary.right.malignant:.3f}",
    ] or printed == [
        f"good {good.primary.left.malignant:.3f} {good.primary.right.malignant:.3f}",
        "broken failed: " + by_id["broken"].error,
    ]

    cli = CliRunner().invoke(app, ["predict", "exams", "--weights-dir", "weights",
                                   "--pipeline-config", "examples/small_pipeline.yaml",
                                   "--device", "cpu", "-q"])
    assert cli.exit_code == 3, cli.stderr
    lines = {d["exam_id"]: d for d in map(json.loads, cli.stdout.splitlines())}
    assert lines["good"]["predictions"] == good.model_dump(mode="json")["predictions"]
    assert lines["broken"]["error"] == by_id["broken"].error


def test_predict_refuses_unknown_names_with_config_errors(tmp_path: Path) -> None:
    write_exam(tmp_path / "e", shape=(200, 150))
    with pytest.raises(ConfigError, match="unknown model family"):
        mammocli.predict(tmp_path / "e", family="gmic-x")
    with pytest.raises(ConfigError, match="unknown model"):
        mammocli.predict(tmp_path / "e", variants=["image"])
    with pytest.raises(ConfigError, match="--tta must be 0"):
        mammocli.predict(tmp_path / "e", tta=-1)


def test_import_mammocli_stays_light_and_exposes_the_api() -> None:
    code = ("import sys, mammocli\n"
            "light = 'torch' not in sys.modules\n"
            "print(light, mammocli.predict.__module__, mammocli.PredictionResult.__name__, "
            "mammocli.Variant.IMAGE_ONLY, 'torch' in sys.modules)")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120, check=False)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["True", "mammocli.api", "PredictionResult", "image_only",
                                    "True"]


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def test_the_predict_command_only_parses_calls_and_renders() -> None:
    path = PACKAGE / "cli" / "predict.py"
    tree = ast.parse(path.read_text("utf-8"))
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    # No models, no exam loop, no device dispatch: those are the library's.
    for module in ("inference.predictor", "inference.batch", "families", "families.dmv_cnn",
                   "parallel"):
        assert module not in imported, module
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for alias in node.names}
    assert {"run_exams", "run_exams_on_devices", "select_device", "Predictor"}.isdisjoint(names)
    for command in ("predict", "heatmaps"):
        body = _function(tree, command).body
        lines = body[-1].end_lineno - body[0].lineno + 1  # type: ignore[operator]
        assert lines <= 80, f"{command}: {lines} lines apart from the option declarations"
