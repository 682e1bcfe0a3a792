"""The inference rebuild of the patch classifier computes the same function: bit for bit in its
exact plan, within float rounding in its folded plan (BatchNorm folded into convolutions,
transitions pooled before their convolution)."""

from __future__ import annotations

import pytest
import torch

from mammocli.models.densenet import PatchClassifier
from mammocli.models.densenet_inference import (
    InferencePatchClassifier,
    fused_conv_relu_available,
)
from mammocli.synthetic.phantoms import _randomise

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model() -> PatchClassifier:
    torch.manual_seed(0)
    return _randomise(PatchClassifier(), 0)


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    grey = torch.randn((6, 1, 64, 64), generator=gen)
    return grey.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


def _plain(model: PatchClassifier, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    plain = PatchClassifier()
    plain.load_state_dict(model.state_dict())
    plain = plain.eval().to(dtype).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    with torch.inference_mode():
        return plain(x.to(dtype)).float()


def test_exact_plan_is_bit_identical_to_the_module(model: PatchClassifier,
                                                   patches: torch.Tensor) -> None:
    network = InferencePatchClassifier.build(model, CPU, torch.float32)
    with torch.inference_mode():
        ours = network(patches)
    assert torch.equal(ours, _plain(model, patches, torch.float32))


def test_folded_plan_differs_only_by_float_rounding(model: PatchClassifier,
                                                    patches: torch.Tensor) -> None:
    network = InferencePatchClassifier.build(model, CPU, torch.float32, fold=True)
    with torch.inference_mode():
        ours = network(patches)
    want = _plain(model, patches, torch.float32)
    assert not torch.equal(ours, want)  # it really is a different computation...
    torch.testing.assert_close(ours, want, rtol=1e-4, atol=1e-4)  # ...of the same function


def test_folded_plan_in_bf16_stays_close_to_fp32(model: PatchClassifier,
                                                 patches: torch.Tensor) -> None:
    network = InferencePatchClassifier.build(model, CPU, torch.bfloat16, fold=True)
    with torch.inference_mode():
        ours = torch.softmax(network(patches.to(torch.bfloat16)).float(), dim=1)
    want = torch.softmax(_plain(model, patches, torch.float32), dim=1)
    assert (ours - want).abs().max().item() < 0.05


def test_the_inference_network_does_not_alias_the_loaded_model(model: PatchClassifier) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    InferencePatchClassifier.build(model, CPU, torch.bfloat16, fold=True)
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())


def test_folded_plan_without_the_fused_op_computes_the_same(model: PatchClassifier,
                                                            patches: torch.Tensor) -> None:
    """The fallback for CPUs where oneDNN's fused convolution + ReLU cannot run: public ops
    only, the same function (and, where the fused op runs, the same numbers up to rounding)."""
    unfused = InferencePatchClassifier.build(model, CPU, torch.float32, fold=True,
                                             fuse_relu=False)
    assert not any(layer.conv1.fused_relu for block in unfused.blocks for layer in block)
    with torch.inference_mode():
        ours = unfused(patches)
    torch.testing.assert_close(ours, _plain(model, patches, torch.float32), rtol=1e-4,
                               atol=1e-4)
    if fused_conv_relu_available(CPU, torch.float32):
        fused = InferencePatchClassifier.build(model, CPU, torch.float32, fold=True)
        assert all(layer.conv1.fused_relu for block in fused.blocks for layer in block)
        with torch.inference_mode():
            torch.testing.assert_close(fused(patches), ours, rtol=1e-5, atol=1e-5)
