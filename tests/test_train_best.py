"""Training's best.pt is never chosen from a mean AUROC over the one label a validation set
scores when the others are undefined: it falls back to the validation loss, and says so."""

from __future__ import annotations

from typing import Any

import torch

from mammocli.train.loop import evaluate, monitor_value, undefined_auroc_warning


class _Spec:
    """Two labels, fixed scores: `benign` has one class only in this validation set."""

    metric_names = ("benign", "malignant")

    def __init__(self, benign: list[float]) -> None:
        self.benign = benign

    def evaluate_batch(self, model: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor,
                                                              torch.Tensor]:
        scores = torch.tensor([[0.1, 0.9], [0.2, 0.1], [0.3, 0.8], [0.4, 0.3]])
        targets = torch.tensor([[b, m] for b, m in zip(self.benign, [1.0, 0.0, 1.0, 0.0],
                                                        strict=True)])
        return torch.tensor(0.5), scores, targets


def _record(benign: list[float]) -> dict[str, Any]:
    return evaluate(torch.nn.Linear(1, 1), _Spec(benign),  # type: ignore[arg-type]
                    [torch.zeros(1)], torch.device("cpu"))  # type: ignore[arg-type]


def test_one_label_undefined_means_no_mean_auroc_and_the_loss_decides() -> None:
    record = _record([0.0, 0.0, 0.0, 0.0])  # benign: negatives only
    assert record["auroc"] == {"benign": None, "malignant": 1.0}
    assert record["auroc_scored"] == ["malignant"]
    assert record["mean_auroc"] is None  # not 1.0, the malignant AUROC alone
    assert monitor_value({**record, "val_loss": 0.25}, "mean_auroc") == (-0.25, "val_loss")
    warning = undefined_auroc_warning(record, "mean_auroc")
    assert warning is not None
    assert "undefined for benign" in warning and "scored: malignant" in warning
    assert "validation loss" in warning


def test_every_label_scored_uses_the_mean() -> None:
    record = _record([1.0, 0.0, 0.0, 1.0])
    assert record["auroc_scored"] == ["benign", "malignant"]
    assert record["mean_auroc"] == (record["auroc"]["benign"] + 1.0) / 2
    assert monitor_value(record, "mean_auroc") == (record["mean_auroc"], "mean_auroc")
    assert undefined_auroc_warning(record, "mean_auroc") is None
