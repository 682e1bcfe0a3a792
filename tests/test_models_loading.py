"""Loading the official weight formats strictly, with their historical variants."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import require_reference

from mammocli.errors import WeightsError
from mammocli.models.breast import ImageBreastModel, SplitBreastModel
from mammocli.models.densenet import PatchClassifier, same_padding
from mammocli.models.loading import (
    load_image_wise,
    load_patch_classifier,
    load_view_wise,
    read_state_dict,
)
from mammocli.views import View


def test_all_five_shared_files_load(reference_dir: Path) -> None:
    """Each file loads into its architecture with the file's own values (the last tensor of
    each file, whose key no historical spelling changes), not merely an object of the type."""
    weights = reference_dir / "weights"
    loaded: dict[str, torch.nn.Module] = {
        "sample_patch_model.p": load_patch_classifier(weights / "sample_patch_model.p"),
        "sample_image_model.p": load_view_wise(weights / "sample_image_model.p", 1),
        "sample_imageheatmaps_model.p": load_view_wise(
            weights / "sample_imageheatmaps_model.p", 3),
        "ImageOnly__ModeImage_weights.p": load_image_wise(
            weights / "ImageOnly__ModeImage_weights.p", 1),
        "ImageHeatmaps__ModeImage_weights.p": load_image_wise(
            weights / "ImageHeatmaps__ModeImage_weights.p"),
    }
    channels = {name: 3 if "eatmaps" in name else 1 for name in loaded}
    for name, model in loaded.items():
        state = read_state_dict(weights / name)
        key = next(reversed(state))
        assert torch.equal(model.state_dict()[key], state[key]), name
        if name != "sample_patch_model.p":
            assert model.input_channels == channels[name], name  # type: ignore[attr-defined]


def test_state_dict_keys_match_the_official_listing(reference_dir: Path) -> None:
    """Every key, shape and order of the five formats (reference/outputs/state_dict_keys.txt)."""
    listing = (reference_dir / "outputs" / "state_dict_keys.txt").read_text().splitlines()
    sections: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    current = ""
    for line in listing:
        if line.startswith("###"):
            current = line.split()[1].removesuffix("['model']")
            sections[current] = []
        elif line.strip():
            key, shape, _dtype = line.split("\t")
            sections[current].append((key, tuple(int(x) for x in re.findall(r"\d+", shape))))
    models = {
        "sample_patch_model.p": PatchClassifier(),
        "sample_image_model.p": SplitBreastModel(1),
        "sample_imageheatmaps_model.p": SplitBreastModel(3),
        "ImageOnly__ModeImage_weights.p": ImageBreastModel(1),
        "ImageHeatmaps__ModeImage_weights.p": ImageBreastModel(3),
    }
    for name, model in models.items():
        ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        assert ours == sections[name], name


def _patch_state() -> dict[str, torch.Tensor]:
    return PatchClassifier().state_dict()


def test_old_densenet_spelling_and_missing_num_batches_tracked(tmp_path: Path) -> None:
    state = _patch_state()
    old = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        old[re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key)] = value
    assert any(".norm.1." in k for k in old)
    torch.save(old, tmp_path / "old.p")
    model = load_patch_classifier(tmp_path / "old.p")
    for key, value in state.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(model.state_dict()[key], value)


def test_wrapped_and_bare_breast_files(tmp_path: Path) -> None:
    state = SplitBreastModel(1).state_dict()
    torch.save({"model": state}, tmp_path / "wrapped.p")
    torch.save(dict(state), tmp_path / "bare.p")
    for name in ("wrapped.p", "bare.p"):
        loaded = load_view_wise(tmp_path / name, 1)
        assert torch.equal(loaded.fc1_cc.weight, state["fc1_cc.weight"])


def test_missing_extra_and_wrong_shape_keys_are_named(tmp_path: Path) -> None:
    state = _patch_state()
    missing = dict(state)
    del missing["classifier.bias"]
    torch.save(missing, tmp_path / "missing.p")
    with pytest.raises(WeightsError, match=r"missing.p.*missing keys: classifier\.bias"):
        load_patch_classifier(tmp_path / "missing.p")
    extra = dict(state, **{"features.extra.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.p")
    with pytest.raises(WeightsError, match=r"unexpected keys: features\.extra\.weight"):
        load_patch_classifier(tmp_path / "extra.p")
    wrong = dict(state, **{"classifier.weight": torch.zeros(5, 1024)})
    torch.save(wrong, tmp_path / "wrong.p")
    with pytest.raises(WeightsError, match=r"wrong shapes: classifier\.weight \(5, 1024\)"):
        load_patch_classifier(tmp_path / "wrong.p")


def test_wrong_variant_corrupt_and_unsafe_files(tmp_path: Path) -> None:
    torch.save({"model": SplitBreastModel(3).state_dict()}, tmp_path / "three.p")
    with pytest.raises(WeightsError, match="image\\+heatmaps model, but the image-only"):
        load_view_wise(tmp_path / "three.p", 1)
    (tmp_path / "junk.p").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="junk.p: cannot be read"):
        read_state_dict(tmp_path / "junk.p")
    torch.save({"model": {"x": object()}}, tmp_path / "pickle.p")  # needs code execution
    with pytest.raises(WeightsError, match="pickle.p"):
        read_state_dict(tmp_path / "pickle.p")
    with pytest.raises(WeightsError, match="not found"):
        read_state_dict(tmp_path / "absent.p")


def test_view_aliases_share_weights() -> None:
    model = SplitBreastModel(1)
    resnets = model.four_view_resnet
    assert resnets.l_cc is resnets.cc and resnets.r_mlo is resnets.mlo
    keys = list(model.state_dict())
    prefixes = [p for p in ("cc", "mlo", "l_cc", "l_mlo", "r_cc", "r_mlo")
                if f"four_view_resnet.{p}.first_conv.weight" in keys]
    assert prefixes == ["cc", "mlo", "l_cc", "l_mlo", "r_cc", "r_mlo"]


@pytest.mark.parametrize("size,kernel,stride,pads", [
    (256, 7, 2, (2, 3)), (128, 3, 2, (0, 1)), (64, 3, 1, (1, 1)), (255, 7, 2, (3, 3)),
    (64, 1, 1, (0, 0)),
])
def test_tf_same_padding(size: int, kernel: int, stride: int, pads: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == pads


def test_resnet_output_sizes_match_spec() -> None:
    from mammocli.models.resnet22 import ResNet22, max_pool_3x3_stride_2

    net = ResNet22(1).eval()
    with torch.inference_mode():
        h = max_pool_3x3_stride_2(net.first_conv(torch.zeros(1, 1, 2677, 1942)))
        assert tuple(h.shape[-2:]) == (667, 483)
        for stage in net.layer_list:
            h = stage(h)
    assert tuple(h.shape) == (1, 256, 42, 31)


def test_image_wise_head_uses_the_views_own_rows() -> None:
    model = ImageBreastModel(1).eval()
    feats = torch.randn(3, 256)
    out = model.head(View.R_MLO, feats)
    assert out.shape == (3, 4, 2)
    # rows 0 and 1 come from the first four outputs of the view's 8-output layer
    logits = model.output_layer_rmlo.fc_layer(torch.relu(model.fc1_rmlo(feats)))[:, :4]
    expected = torch.log_softmax(logits.view(3, 2, 2), dim=-1)
    assert torch.allclose(out[:, :2], expected)


def test_reference_required_helper_skips_cleanly(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    import conftest

    monkeypatch.setattr(conftest, "REFERENCE_DIR", tmp_path / "absent")
    with pytest.raises(pytest.skip.Exception, match="reference data not found"):
        require_reference()


def test_densenet_training_path_matches_inference_and_backpropagates() -> None:
    """The module training runs (concatenating dense blocks, autograd on, BatchNorm frozen as
    `train` freezes it) computes what the inference rebuild that `predict` runs computes (one
    shared feature buffer, norms as fused multiply-adds), and gradients reach every weight."""
    from mammocli.models.densenet_inference import InferencePatchClassifier
    from mammocli.synthetic.phantoms import _randomise
    from mammocli.train.tasks import freeze_batchnorm

    torch.manual_seed(0)
    model = _randomise(PatchClassifier(), 0)  # non-trivial BatchNorm statistics
    with torch.no_grad():
        model.classifier.weight.mul_(100)  # logits of a few units, so 1e-4 is a tight bound
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    rebuilt = InferencePatchClassifier.build(model, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        inference = rebuilt(x.contiguous(memory_format=torch.channels_last))
    model.train()
    freeze_batchnorm(model)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    training = model(x)
    assert training.requires_grad
    assert (inference[0] - inference[1]).abs().max() > 1e-2  # the two inputs are told apart
    # measured 2e-6 (bit-identical with a channels_last input on AVX-512)
    torch.testing.assert_close(training.detach(), inference, rtol=1e-5, atol=1e-4)
    training.sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stats.items())  # frozen
