"""Losses and validation scores of the breast models (both kinds) and the patch classifier."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mammocli.train.config import parse_config
from mammocli.train.tasks import TaskSpec, new_model, official_name
from mammocli.views import VIEWS


def _spec(tmp_path: Path, task: str, kind: str = "view-wise") -> tuple[TaskSpec, torch.nn.Module]:
    text = f"task: {task}\ndata: {{train: m.csv}}\noutput_dir: o\nmodel: {{kind: {kind}}}\n"
    config = parse_config(text, "t", tmp_path)
    return TaskSpec(config), new_model(config)


@pytest.mark.parametrize("kind", ["view-wise", "image-wise"])
def test_breast_loss_is_sum_of_label_bces(tmp_path: Path, kind: str) -> None:
    spec, model = _spec(tmp_path, "breast", kind)
    model.eval()
    torch.manual_seed(0)
    inputs = {v.value: torch.randn(3, 1, 80, 64) for v in VIEWS}
    target = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 1, 1]])
    loss, scores, targets = spec.evaluate_batch(model, (inputs, target))
    assert scores.shape == (3, 4) and torch.equal(targets, target)
    assert torch.all((scores > 0) & (scores < 1))
    if kind == "view-wise":
        out = model({v: inputs[v.value] for v in VIEWS})
        p = [o.exp()[..., 1] for o in out.values()]  # CC and MLO heads
        bce = sum(torch.nn.functional.binary_cross_entropy(q, target.float(), reduction="none")
                  .sum(1) for q in p)
        assert torch.allclose(loss, bce.mean(), atol=1e-5)
        assert torch.allclose(scores, (p[0] + p[1]) / 2)
    assert torch.isfinite(loss) and loss > 0


def test_patch_scores_follow_heatmap_classes(tmp_path: Path) -> None:
    spec, model = _spec(tmp_path, "patch")
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    target = torch.tensor([0, 1, 2, 3])
    loss, scores, targets = spec.evaluate_batch(model, (x, target))
    probs = torch.softmax(model(x), dim=1)
    assert torch.allclose(scores, probs[:, [0, 1]])  # index 0 malignant, 1 benign
    assert targets.tolist() == [[1, 0], [0, 1], [0, 0], [0, 0]]
    assert spec.metric_names == ("malignant", "benign")


def test_official_names(tmp_path: Path) -> None:
    names = set()
    for task, kind, variant in [("patch", "view-wise", "image-only"),
                                ("breast", "view-wise", "image-only"),
                                ("breast", "view-wise", "image-and-heatmaps"),
                                ("breast", "image-wise", "image-only"),
                                ("breast", "image-wise", "image-and-heatmaps")]:
        text = (f"task: {task}\ndata: {{train: m.csv}}\noutput_dir: o\n"
                f"model: {{kind: {kind}, variant: {variant}}}\n")
        names.add(official_name(parse_config(text, "t", tmp_path)))
    assert names == {"sample_patch_model.p", "sample_image_model.p",
                     "sample_imageheatmaps_model.p", "ImageOnly__ModeImage_weights.p",
                     "ImageHeatmaps__ModeImage_weights.p"}
