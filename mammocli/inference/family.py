"""What a model family is: the seam between the shared pipeline and one family's networks.

The shared part (discovery, crop, centres, batching, devices, output sinks, hybrid, evaluation)
knows a family only through the two protocols below. A family is a module under
`mammocli/families/` with one `ModelFamily` object registered in `families.FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import JsonValue

from ..config import PipelineConfig
from ..outputs.schema import BreastPredictions, Probabilities
from ..outputs.weights_used import WeightsUsed
from ..views import View
from ..vocabulary import Export, Family, ModelKind, Precision, Variant

if TYPE_CHECKING:  # torch loads with the networks, not when the CLI parses options
    import torch

    from ..inference.randomness import ExamRandomness
    from ..preprocess.prepare import PreparedImage

Prepared = Mapping[View, list["PreparedImage"]]
Locate = Callable[[str], Path]  # official weight-file name -> local path (downloaded, verified)


@dataclass(frozen=True)
class ImageOutput:
    """A family's answer for one prepared image (same order as the prepared images)."""

    predictions: dict[Variant, Probabilities] | None = None  # per-image probabilities
    outputs: dict[str, JsonValue] | None = None  # anything else, for the result (JSON values)


@dataclass(frozen=True)
class Inference:
    """A family's answer for one exam. The shared `inference.report` turns it into the result."""

    predictions: dict[Variant, BreastPredictions]  # per breast, per variant; {} = exports only
    primary: Variant | None  # the variant `hybrid`, `evaluate` and --csv read
    images: dict[View, list[ImageOutput]] = field(default_factory=dict)  # {}: nothing per image
    exports: dict[Export, object] = field(default_factory=dict)  # arrays for `outputs/` writers
    warnings: list[str] = field(default_factory=list)
    outputs: dict[str, JsonValue] | None = None  # exam-level extras, for the result
    tta: int = 0  # test-time augmentation draws behind the numbers (recorded in the result)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds (run summary)


class LoadedModels(Protocol):
    """A family's networks, loaded on one device: what a `Predictor` runs."""

    @property
    def family(self) -> ModelFamily: ...
    @property
    def kind(self) -> ModelKind: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def precision(self) -> Precision: ...
    @property
    def weights(self) -> list[WeightsUsed]: ...

    def infer(self, prepared: Prepared, rng: ExamRandomness, config: PipelineConfig,
              exports: frozenset[Export]) -> Inference:
        """Prepared views (stages 1-2, from `family.preparation(config)`) -> outputs. Draw
        random numbers only from `rng` (its generators are the run's determinism)."""
        ...


class ModelFamily(Protocol):
    """A model family: its names, weight files, loading, and what it needs from preparation."""

    @property
    def name(self) -> Family: ...
    @property
    def kinds(self) -> tuple[ModelKind, ...]: ...  # the first is the default
    @property
    def variants(self) -> tuple[Variant, ...]: ...  # all: the default of `predict`
    @property
    def exports(self) -> frozenset[Export]: ...  # what `infer` can hand out when asked

    def weight_files(self, kind: ModelKind, variants: tuple[Variant, ...],
                     exports: frozenset[Export] = frozenset()) -> list[str]:
        """The official weight files `load` reads (each located, verified, before loading)."""
        ...

    def preparation(self, config: PipelineConfig) -> PipelineConfig:
        """The config stages 1-2 run with (e.g. the family's window sizes for best centres)."""
        ...

    def load(self, kind: ModelKind, variants: tuple[Variant, ...], locate: Locate,
             device: torch.device, config: PipelineConfig, *,
             precision: Precision = Precision.FP32,
             exports: frozenset[Export] = frozenset()) -> LoadedModels:
        ...
