"""CUDA: the same results as on the CPU, and bounded deviations for the approximate precisions.
Deselected by default; on a machine with a GPU run `python -m pytest -m gpu tests/test_gpu.py`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.models.densenet import PatchClassifier
from mammocli.models.densenet_inference import InferencePatchClassifier
from mammocli.synthetic.phantoms import _randomise, write_exam

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
runner = CliRunner()
CUDA = torch.device("cuda")


def _predictions(*args: str | Path) -> dict:
    result = runner.invoke(app, ["predict", *map(str, args)])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["predictions"]


def _max_diff(a: dict, b: dict) -> float:
    return max(abs(a[v][side][label] - b[v][side][label]) for v in a
               for side in ("left", "right") for label in ("benign", "malignant"))


@pytest.fixture(scope="module")
def exam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_exam(tmp_path_factory.mktemp("gpu") / "e1", shape=(400, 300), seed=3)


@pytest.mark.parametrize("fold", [False, True])
def test_patch_network_on_cuda_matches_the_cpu(fold: bool) -> None:
    torch.manual_seed(0)
    model = _randomise(PatchClassifier(), 0)
    x = torch.randn(4, 1, 64, 64).expand(-1, 3, -1, -1).contiguous(
        memory_format=torch.channels_last)
    with torch.inference_mode():
        cpu = InferencePatchClassifier.build(model, torch.device("cpu"))(x)
        gpu = InferencePatchClassifier.build(model, CUDA, fold=fold)(x.to(CUDA)).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_predict_on_cuda_matches_the_cpu_and_precisions_stay_close(
        exam: Path, random_weights: Path, small_pipeline: Path) -> None:
    args = [exam, "--weights-dir", random_weights, "--pipeline-config", small_pipeline,
            "--tta", "2"]
    cpu = _predictions(*args, "--device", "cpu")
    gpu = _predictions(*args, "--device", "cuda")
    assert _max_diff(gpu, cpu) < 1e-4
    for precision in ("tf32", "bf16"):
        approx = _predictions(*args, "--device", "cuda", "--precision", precision)
        assert _max_diff(approx, gpu) < 0.05, precision


def test_devices_uses_every_gpu_with_the_single_process_results(
        tmp_path: Path, random_weights: Path, small_pipeline: Path) -> None:
    root = tmp_path / "root"
    for i in range(3):
        write_exam(root / f"e{i}", shape=(400, 300), seed=i)
    args = [root, "--weights-dir", random_weights, "--pipeline-config", small_pipeline,
            "--tta", "2", "--variants", "image-only"]
    single = runner.invoke(app, ["predict", *map(str, args), "--device", "cuda"])
    several = runner.invoke(app, ["predict", *map(str, args), "--devices", "cuda"])
    assert single.exit_code == several.exit_code == 0, several.stderr
    one = [json.loads(line) for line in single.stdout.splitlines()]
    many = [json.loads(line) for line in several.stdout.splitlines()]
    assert [r["exam_id"] for r in many] == ["e0", "e1", "e2"]
    for a, b in zip(many, one, strict=True):
        assert _max_diff(a["predictions"], b["predictions"]) < 1e-6
