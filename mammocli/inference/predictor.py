"""Orchestration: an exam on disk -> a PredictionResult, for any model family. No maths and
no family knowledge here: preparation is shared (stages 1-2), the family computes
(`inference.family.LoadedModels.infer`), `report` assembles the result."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..config import FlipMode, PipelineConfig
from ..errors import ConfigError
from ..io.dicom.options import DicomOptions
from ..io.exam import ExamSource
from ..outputs.schema import PredictionResult
from ..preprocess.prepare import ExamPreparer, PreparedImage
from ..views import View
from ..vocabulary import Export
from .family import LoadedModels
from .randomness import ExamRandomness
from .report import build_result


@dataclass(frozen=True)
class ExamOutput:
    """Everything computed for one exam: the result, plus arrays for optional exports."""

    result: PredictionResult | None  # None when only exports (e.g. heatmaps) were asked for
    prepared: dict[View, list[PreparedImage]]
    exports: dict[Export, object] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds (run summary)

    @property
    def heatmaps(self) -> dict[View, list]:  # type: ignore[type-arg]
        """The DMV-CNN's heatmaps (canonical orientation), {} when none were computed."""
        return self.exports.get(Export.HEATMAPS, {})  # type: ignore[return-value]


class Predictor:
    """One family's loaded models plus the shared preparation, run exam by exam."""

    def __init__(self, models: LoadedModels, config: PipelineConfig, *,
                 flip_mode: FlipMode = FlipMode.AUTO, exports: Iterable[Export] = (),
                 dicom: DicomOptions | None = None) -> None:
        self.models = models
        self.config = config
        self.flip_mode = flip_mode
        self.exports = frozenset(exports)
        unknown = self.exports - models.family.exports
        if unknown:
            raise ConfigError(f"the {models.family.name.value} family cannot export "
                              f"{', '.join(sorted(e.value for e in unknown))}")
        self.dicom = dicom or DicomOptions()
        self.preparer = ExamPreparer(models.family.preparation(config), flip_mode, self.dicom)

    def prepare(self, exam: ExamSource) -> dict[View, list[PreparedImage]]:
        return self.preparer(exam)

    def run(self, exam: ExamSource, rng: ExamRandomness,
            prepared: dict[View, list[PreparedImage]] | None = None,
            prepare_s: float = 0.0) -> ExamOutput:
        """Run one exam; `prepared` is stages 1-2, when a caller already did them (e.g. while
        the previous exam was computing, in `prepare_s` seconds)."""
        started = time.perf_counter()
        if prepared is None:
            prepared = self.prepare(exam)
            prepare_s = time.perf_counter() - started
        models = self.models
        inference = models.infer(prepared, rng, self.config, self.exports)
        timings = {"prepare": prepare_s, **inference.timings}
        if not inference.predictions:  # exports only: no breast-level result
            return ExamOutput(None, prepared, inference.exports, timings)
        result = build_result(
            exam, prepared, inference, family=models.family.name, kind=models.kind,
            device=str(models.device), precision=models.precision, seed=rng.seed,
            config=self.config, duration_s=time.perf_counter() - started,
            weights=models.weights, include_uids=self.dicom.include_uids)
        return ExamOutput(result, prepared, inference.exports, timings)
