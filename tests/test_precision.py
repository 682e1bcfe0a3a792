"""Speed work: the exact path stays exact, and each opt-in approximate precision stays within a
bound of fp32 on a small synthetic case (random official-format weights, small pipeline)."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mammocli.config import PipelineConfig
from mammocli.errors import ConfigError
from mammocli.families.dmv_cnn import DmvCnnModels
from mammocli.inference.heatmaps import HeatmapEngine
from mammocli.inference.precision import Precision, configure, cpu_bf16_problem
from mammocli.inference.predictor import Predictor
from mammocli.inference.randomness import ExamRandomness
from mammocli.io.discover import read_exam_folder
from mammocli.models import densenet, resnet22
from mammocli.models.densenet import PatchClassifier
from mammocli.synthetic.phantoms import _randomise, phantom, write_exam, write_random_weights
from mammocli.vocabulary import ModelKind, Variant

# Measured deviations from fp32 on these cases are far smaller (see README "Performance");
# the bounds leave room for other CPUs' bf16 kernels while still catching a broken mode.
BF16_PATCH_BOUND = 0.05
BF16_BREAST_BOUND = 0.05
CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> object:
    """These tests are small; one thread avoids OpenMP barrier stalls when the machine is
    shared with other jobs (many times slower with 2 threads on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_weights(tmp_path_factory.mktemp("weights"), seed=0)


@pytest.fixture(scope="module")
def exam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_exam(tmp_path_factory.mktemp("exam") / "e1", shape=(320, 240), seed=3)


def test_patches_batched_across_images_match_one_image_at_a_time() -> None:
    rng = np.random.default_rng(1)
    images = [phantom((150, 110), rng), phantom((130, 120), rng)]
    engine = HeatmapEngine(_randomise(PatchClassifier(), 0), CPU, patch_size=64, stride=30,
                           batch_size=7)
    grids = [engine.grid(im.shape, random.Random(i)) for i, im in enumerate(images)]
    together = engine.exam_patch_probabilities(images, grids)
    for image, grid, joint in zip(images, grids, together, strict=True):
        alone = engine.patch_probabilities(image, *grid)
        np.testing.assert_allclose(joint, alone, rtol=0, atol=1e-5)


def test_bf16_patch_probabilities_stay_close_to_fp32() -> None:
    image = phantom((160, 120), np.random.default_rng(2))
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        engine = HeatmapEngine(_randomise(PatchClassifier(), 0), CPU, patch_size=64, stride=30,
                               batch_size=16, dtype=dtype)
        assert engine.network.classifier.weight.dtype == dtype
        out[dtype] = engine.patch_probabilities(image, *engine.grid(image.shape,
                                                                    random.Random(0)))
        assert out[dtype].dtype == np.float32
    deviation = np.abs(out[torch.float32] - out[torch.bfloat16]).max()
    assert deviation < BF16_PATCH_BOUND


def test_bf16_breast_predictions_stay_close_to_fp32_and_are_recorded(weights: Path,
                                                                      exam: Path) -> None:
    config = PipelineConfig.small(tta=2)
    source = read_exam_folder(exam)
    results = {}
    for precision in (Precision.FP32, Precision.BF16):
        # Image-only keeps this fast; the patch network's bf16 path has its own test above.
        models = DmvCnnModels.load(ModelKind.VIEW_WISE, (Variant.IMAGE_ONLY,),
                             lambda name: weights / name, CPU, config, precision=precision)
        assert models.precision is precision
        result = Predictor(models, config).run(source, ExamRandomness(0)).result
        assert result is not None and result.precision == precision.value
        results[precision] = result
    for variant in (Variant.IMAGE_ONLY,):
        a = results[Precision.FP32].predictions[variant]
        b = results[Precision.BF16].predictions[variant]
        for side in ("left", "right"):
            for label in ("benign", "malignant"):
                x = getattr(getattr(a, side), label)
                y = getattr(getattr(b, side), label)
                assert abs(x - y) < BF16_BREAST_BOUND, (variant, side, label, x, y)


def test_tf32_needs_cuda_and_fp32_is_float32() -> None:
    with pytest.raises(ConfigError, match="CUDA"):
        configure(Precision.TF32, CPU)
    assert configure(Precision.FP32, CPU) == torch.float32
    assert configure("bf16", CPU) == torch.bfloat16


@pytest.mark.parametrize("size", [128, 127, 64, 33, 8])
def test_same_max_pool_without_padding_copy_is_bit_identical(size: int) -> None:
    pool = densenet.SamePadMaxPool(3, 2)
    x = torch.relu(torch.randn(2, 4, size, size))
    expected = torch.nn.functional.max_pool2d(densenet._same_pad(x, 3, 2), 3, 2)
    assert torch.equal(pool(x), expected)


@pytest.mark.parametrize("shape", [(2, 3, 41, 37), (1, 16, 8, 9), (2, 4, 3, 3)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_strided_max_pool_is_bit_identical(shape: tuple[int, ...], channels_last: bool) -> None:
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.equal(resnet22.max_pool_3x3_stride_2(x), F.max_pool2d(x, 3, 2))


# Run in a child whose oneDNN may use AVX2 at most: the machine of a CPU without AVX-512,
# where oneDNN's fused bf16 convolution (a private torch op) refuses to run.
_AVX2_CHILD = """
import json, random
import numpy as np, torch
from mammocli.inference.heatmaps import HeatmapEngine
from mammocli.models.densenet import PatchClassifier
from mammocli.models.densenet_inference import fused_conv_relu_available
from mammocli.inference.precision import Precision, configure, cpu_bf16_problem, cpu_bf16_problem
from mammocli.synthetic.phantoms import _randomise, phantom
torch.set_num_threads(1)
cpu = torch.device("cpu")
image = phantom((130, 100), np.random.default_rng(2))
out = {}
for precision in (Precision.FP32, Precision.BF16):
    engine = HeatmapEngine(_randomise(PatchClassifier(), 0), cpu, patch_size=64, stride=30,
                           batch_size=8, dtype=configure(precision, cpu))
    out[precision] = engine.patch_probabilities(image, *engine.grid(image.shape,
                                                                    random.Random(0)))
print(json.dumps({
    "fused_bf16": fused_conv_relu_available(cpu, torch.bfloat16),
    "bf16_problem": cpu_bf16_problem(),
    "deviation": float(np.abs(out[Precision.FP32] - out[Precision.BF16]).max()),
}))
"""


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="ONEDNN_MAX_CPU_ISA=AVX2 limits x86 CPUs only")
def test_bf16_runs_on_a_cpu_without_avx512() -> None:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    child = subprocess.run([sys.executable, "-c", _AVX2_CHILD], env=env, capture_output=True,
                           text=True, timeout=300, check=False)
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(child.stdout.splitlines()[-1])
    assert report["fused_bf16"] is False  # probed, and the plan falls back to public ops
    assert report["bf16_problem"] is None
    assert report["deviation"] < BF16_PATCH_BOUND


def _broken_bf16_conv(*args: object, **kwargs: object) -> torch.Tensor:
    raise RuntimeError("mkldnn_convolution: bf16 path needs the cpu support avx_ne_convert or "
                       "avx512bw, avx512vl and avx512dq")


@pytest.fixture
def fresh_probe() -> object:
    cpu_bf16_problem.cache_clear()
    yield
    cpu_bf16_problem.cache_clear()


@pytest.mark.usefixtures("fresh_probe")
def test_bf16_where_no_kernel_runs_is_a_config_error_naming_the_cpu_feature(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No CPU at hand lacks every bf16 convolution, so the kernel's own refusal is replayed."""
    monkeypatch.setattr(F, "conv2d", _broken_bf16_conv)
    with pytest.raises(ConfigError, match="avx512bw") as bf16:
        configure(Precision.BF16, CPU)
    assert "fp32" in (bf16.value.hint or "")
    with pytest.raises(ConfigError, match="CUDA") as tf32:
        configure(Precision.TF32, CPU)
    assert "--precision bf16" not in (tf32.value.hint or "")
    assert "fp32" in (tf32.value.hint or "")
    assert configure(Precision.FP32, CPU) == torch.float32


@pytest.mark.usefixtures("fresh_probe")
def test_tf32_on_cpu_advises_bf16_only_where_bf16_runs() -> None:
    with pytest.raises(ConfigError) as tf32:
        configure(Precision.TF32, CPU)
    assert cpu_bf16_problem() is None  # this machine runs bf16 (the AVX2 child: above)
    assert "--precision bf16" in (tf32.value.hint or "")


def test_info_reports_what_the_cpu_offers_each_precision() -> None:
    from mammocli.cli.info import cpu_report
    from mammocli.models.densenet_inference import fused_conv_relu_available

    report = cpu_report()
    assert report["bf16"] == ("runs" if cpu_bf16_problem() is None else cpu_bf16_problem())
    assert report["bf16_fused_conv"] is fused_conv_relu_available(CPU, torch.bfloat16)
    assert report["capability"] == torch.backends.cpu.get_cpu_capability()
