"""What differs between the patch and the breast task: the network, its initialisation, the
loss and the validation scores. The loop is written once against this interface."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..model_kinds import BREAST_WEIGHTS, PATCH_WEIGHTS, ModelKind
from ..models.breast import ImageBreastModel, SplitBreastModel
from ..models.densenet import PatchClassifier
from ..models.loading import load_strict, read_state_dict
from ..outputs.schema import VARIANT_IMAGE_AND_HEATMAPS, VARIANT_IMAGE_ONLY
from ..views import LABELS, VIEWS, Angle, View
from ..weights.fetch import resolve_weights
from ..weights.overrides import resolve_override
from .config import InitFrom, ModelKindName, Task, TrainConfig, Variant
from .data import BENIGN, MALIGNANT, breast_side_labels

PATCH_METRICS = ("malignant", "benign")  # one-vs-rest AUROC of the heatmap classes
_VARIANTS = {Variant.IMAGE_ONLY: VARIANT_IMAGE_ONLY,
             Variant.IMAGE_AND_HEATMAPS: VARIANT_IMAGE_AND_HEATMAPS}


def official_name(config: TrainConfig) -> str:
    """The official file name of the trained model (what `predict --weights-dir` looks for)."""
    if config.task is Task.PATCH:
        return PATCH_WEIGHTS
    return BREAST_WEIGHTS[(ModelKind(config.model.kind.value), _VARIANTS[config.model.variant])]


def new_model(config: TrainConfig) -> nn.Module:
    if config.task is Task.PATCH:
        return PatchClassifier()
    channels = 3 if config.model.variant is Variant.IMAGE_AND_HEATMAPS else 1
    if config.model.kind is ModelKindName.VIEW_WISE:
        return SplitBreastModel(channels)
    return ImageBreastModel(channels)


def initial_state(config: TrainConfig) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The starting weights (None: random) and where they came from, for the model card."""
    init = config.model.init
    if init.from_ is InitFrom.RANDOM:
        return None, "random"
    if init.from_ is InitFrom.CHECKPOINT:
        assert init.path is not None
        return read_state_dict(init.path), str(init.path)
    if init.from_ is InitFrom.REGISTERED:
        assert init.name is not None
        path = resolve_override(init.name, "model.init.name")
        return read_state_dict(path), str(path)
    path = resolve_weights(official_name(config), weights_dir=init.weights_dir, progress=False)
    return read_state_dict(path), str(path)


def build_model(config: TrainConfig) -> tuple[nn.Module, str]:
    torch.manual_seed(config.seed)  # random initialisation is seeded too
    model = new_model(config)
    state, source = initial_state(config)
    if state is not None:
        load_strict(model, state, Path(source).name)
    if isinstance(model, SplitBreastModel | ImageBreastModel):
        # The training noise is added per sample by the dataset (seeded by sample, epoch and
        # seed), not per batch from the global generator: so resume is exact and DDP equals
        # one process. std is not saved in the state dict; exported files are unaffected.
        model.noise.std = 0.0
    return model, source


def freeze_batchnorm(model: nn.Module) -> None:
    """BatchNorm layers use (and keep) their running statistics; affine weights still train."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _nll(logp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample sum over labels of the BCE, written as NLL of the 2-class log-softmax."""
    return -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).sum(dim=-1)


def move(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move(v, device) for k, v in batch.items()}
    return [move(v, device) for v in batch]


class TaskSpec:
    """Loss and scores for one task; `model` may be wrapped in DDP (its forward is used)."""

    def __init__(self, config: TrainConfig) -> None:
        self.task = config.task
        self.kind = config.model.kind

    @property
    def metric_names(self) -> tuple[str, ...]:
        return PATCH_METRICS if self.task is Task.PATCH else LABELS

    def _forward(self, model: nn.Module, inputs: Any) -> Any:
        if self.task is Task.PATCH:
            return model(inputs)
        return model({View(k): v for k, v in inputs.items()})

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        inputs, target = batch
        return self.loss_of(self._forward(model, inputs), target)

    def loss_of(self, out: Any, target: torch.Tensor) -> torch.Tensor:
        if self.task is Task.PATCH:
            return F.cross_entropy(out.float(), target)
        if self.kind is ModelKindName.VIEW_WISE:
            # Both heads predict the four labels; the loss sums them.
            per_sample = _nll(out[Angle.CC].float(), target) + _nll(out[Angle.MLO].float(), target)
        else:
            # Each view's head predicts its own breast (rows 0 benign, 1 malignant).
            per_sample = torch.stack([
                _nll(out[v].float()[:, :2], breast_side_labels(target, v.side)) for v in VIEWS
            ]).sum(dim=0)
        return per_sample.mean()

    @torch.no_grad()
    def evaluate_batch(self, model: nn.Module, batch: Any,
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward pass: (loss, (N, metrics) probabilities, (N, metrics) 0/1 targets)."""
        inputs, target = batch
        out = self._forward(model, inputs)
        return (self.loss_of(out, target), *self.scores_of(out, target))

    def scores_of(self, out: Any, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task is Task.PATCH:
            p = torch.softmax(out.float(), dim=1)
            return p[:, [MALIGNANT, BENIGN]], torch.stack(
                [target == MALIGNANT, target == BENIGN], dim=1).long()
        if self.kind is ModelKindName.VIEW_WISE:
            p = (out[Angle.CC].float().exp()[..., 1] + out[Angle.MLO].float().exp()[..., 1]) / 2
            return p, target
        # Image-wise: mean of the breast's CC and MLO predictions, in LABELS order.
        pv = {v: out[v].float().exp()[:, :2, 1] for v in VIEWS}
        left = (pv[View.L_CC] + pv[View.L_MLO]) / 2
        right = (pv[View.R_CC] + pv[View.R_MLO]) / 2
        return torch.stack([left[:, 0], right[:, 0], left[:, 1], right[:, 1]], dim=1), target
