"""Re-run the authors' sample outputs and compare them with the published values.

What runs and what is expected comes from a manifest (JSON), not from code: the shipped one
(`weights/reproduce.json`) holds the authors' four sample exams and single-image example with the
numbers of their README (SPEC section 9); a site or a test can pass another one, e.g. other inputs
served by a mirror with the values the authors' code produced for them.

The runs mirror the authors' scripts: `run.sh` processes the exams in order in one random stream
(RngMode.RUN) with seed 0 and 10 test-time augmentation draws, image-only and image+heatmaps each
starting from the seed; `run_single.sh` runs the image-wise models on one image.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import FlipMode, PipelineConfig, RngMode
from ..errors import ConfigError, InputError
from ..families.dmv_cnn import FAMILY, DmvCnnModels
from ..inference.batch import run_exams
from ..inference.predictor import Predictor
from ..inference.randomness import ExamRandomness
from ..io.exam import ExamSource, ImageSource
from ..io.load import read_view_image
from ..preprocess.prepare import prepare_image
from ..reporting import log
from ..views import LABELS, VIEWS, View
from ..vocabulary import ModelKind, Variant
from ..weights import Registry, download_samples, load_registry, resolve_weights

DEFAULT_TOLERANCE = 2e-3
SINGLE_LABELS: tuple[str, ...] = ("benign", "malignant")
# Settings the command fixes because they define "as the authors ran it" (seed and TTA are
# top-level manifest fields instead).
_FIXED_SETTINGS = {"seed", "tta", "rng_mode"}


# ---- manifest -----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _flip(value: object) -> object:
    # The authors' exam lists say NO / YES; accept any case (and JSON booleans).
    if isinstance(value, bool):
        return FlipMode.YES if value else FlipMode.NO
    return value.lower() if isinstance(value, str) else value


class ExamCase(_Strict):
    id: str
    horizontal_flip: FlipMode = FlipMode.NO
    views: dict[View, list[str]]  # file names of the registry's samples, several per view allowed
    expected: dict[Variant, dict[str, float]]  # variant -> left_benign ... right_malignant

    _flip_mode = field_validator("horizontal_flip", mode="before")(_flip)

    @model_validator(mode="after")
    def _complete(self) -> ExamCase:
        missing = [v.value for v in VIEWS if not self.views.get(v)]
        if missing:
            raise ValueError(f"exam {self.id}: no file for view(s) {', '.join(missing)}")
        _check_labels(f"exam {self.id}", self.expected, LABELS)
        return self


class SingleCase(_Strict):
    file: str
    view: View
    horizontal_flip: FlipMode = FlipMode.NO
    expected: dict[Variant, dict[str, float]]  # variant -> benign, malignant

    _flip_mode = field_validator("horizontal_flip", mode="before")(_flip)

    @model_validator(mode="after")
    def _complete(self) -> SingleCase:
        _check_labels("single", self.expected, SINGLE_LABELS)
        return self


def _check_labels(where: str, expected: Mapping[Variant, Mapping[str, float]],
                  labels: tuple[str, ...]) -> None:
    if not expected:
        raise ValueError(f"{where}: 'expected' needs image_only and/or image_and_heatmaps")
    for variant, values in expected.items():
        if set(values) != set(labels):
            raise ValueError(f"{where} {variant}: expected values must be exactly "
                             f"{', '.join(labels)}; got {', '.join(sorted(values)) or 'none'}")


class Manifest(_Strict):
    comment: str | None = Field(default=None, alias="_comment")
    tolerance: float = Field(default=DEFAULT_TOLERANCE, gt=0)
    seed: int = 0
    tta: int = Field(default=10, ge=0)
    pipeline: dict[str, Any] = Field(default_factory=dict)  # PipelineConfig sizes, e.g. windows
    exams: list[ExamCase] = Field(default_factory=list)
    single: SingleCase | None = None

    @model_validator(mode="after")
    def _valid(self) -> Manifest:
        if not self.exams and self.single is None:
            raise ValueError("the manifest lists no exam and no single-image case")
        known = {f.name for f in fields(PipelineConfig)} - _FIXED_SETTINGS
        unknown = sorted(set(self.pipeline) - known)
        if unknown:
            raise ValueError(f"unknown pipeline setting(s) {unknown}; known: {sorted(known)}")
        return self

    def config(self) -> PipelineConfig:
        sizes: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in self.pipeline.items()}
        return PipelineConfig(**sizes).with_(seed=self.seed, tta=self.tta,
                                             rng_mode=RngMode.RUN)

    @property
    def files(self) -> list[str]:
        """Every sample file the manifest uses, in first-use order."""
        names = [n for exam in self.exams for view in VIEWS for n in exam.views[view]]
        if self.single is not None:
            names.append(self.single.file)
        return list(dict.fromkeys(names))


def builtin_manifest_text() -> str:
    return resources.files("mammocli.weights").joinpath("reproduce.json").read_text("utf-8")


def load_manifest(path: Path | None = None) -> tuple[Manifest, str]:
    """The shipped manifest, or `path`; returns it with its source for messages."""
    source = "builtin" if path is None else str(path)
    try:
        text = builtin_manifest_text() if path is None else Path(path).read_text("utf-8")
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the reproduce manifest {source}: {exc}") from None
    try:
        return Manifest.model_validate(data), source
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"reproduce manifest {source} is not valid: {problems}",
                          hint="see mammocli/weights/reproduce.json for the format") from None


# ---- comparison ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One value of ours beside the expected one."""

    case: str  # "exam 0", "single"
    variant: str
    label: str
    ours: float
    expected: float
    tolerance: float

    @property
    def diff(self) -> float:
        return self.ours - self.expected

    @property
    def passed(self) -> bool:
        # The small slack keeps a value exactly at the tolerance from failing on float noise.
        return abs(self.diff) <= self.tolerance + 1e-12

    def as_dict(self) -> dict[str, object]:
        return {"case": self.case, "variant": self.variant, "label": self.label,
                "ours": self.ours, "expected": self.expected, "diff": self.diff,
                "passed": self.passed}


def compare(case: str, variant: str, ours: Mapping[str, float],
            expected: Mapping[str, float], tolerance: float) -> list[Comparison]:
    """Rows in the order of `expected` (the published column order)."""
    return [Comparison(case, variant, label, float(ours[label]), float(value), tolerance)
            for label, value in expected.items()]


@dataclass(frozen=True)
class ReproduceReport:
    rows: tuple[Comparison, ...]
    tolerance: float
    manifest: str
    device: str
    duration_s: float

    @property
    def failures(self) -> list[Comparison]:
        return [r for r in self.rows if not r.passed]

    @property
    def passed(self) -> bool:
        return bool(self.rows) and not self.failures

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "compared": len(self.rows),
            "failed": len(self.failures),
            "max_abs_diff": max((abs(r.diff) for r in self.rows), default=0.0),
            "manifest": self.manifest,
            "device": self.device,
            "duration_s": round(self.duration_s, 3),
            "rows": [r.as_dict() for r in self.rows],
        }


# ---- runs ---------------------------------------------------------------------------------------


def _variants(expected_sets: list[Mapping[Variant, object]]) -> tuple[Variant, ...]:
    wanted = {v for expected in expected_sets for v in expected}
    return tuple(v for v in FAMILY.variants if v in wanted)


def _source(name: str, view: View, paths: Mapping[str, Path]) -> ImageSource:
    return ImageSource(path=paths[name], relative=name, view=view)


def sample_paths(manifest: Manifest, registry: Registry, root: Path) -> dict[str, Path]:
    """Where `download_samples` put each file the manifest names (root/<exam folder>/<name>)."""
    entries = {e.name: e for e in registry.samples}
    unknown = [n for n in manifest.files if n not in entries]
    if unknown:
        raise ConfigError(
            f"the reproduce manifest uses file(s) the registry {registry.source} does not list: "
            f"{', '.join(unknown)}",
            hint="manifest files are the names of the registry's sample entries")
    return {n: root / (entries[n].exam or "") / n for n in manifest.files}


def run_view_wise(manifest: Manifest, paths: Mapping[str, Path],
                  locate: Callable[[str], Path], device: torch.device) -> Iterator[Comparison]:
    """All exams in order through one Predictor: one random stream, as the authors' run.sh."""
    config = manifest.config()
    variants = _variants([e.expected for e in manifest.exams])
    models = DmvCnnModels.load(ModelKind.VIEW_WISE, variants, locate, device, config)
    predictor = Predictor(models, config, flip_mode=FlipMode.NO)
    exams = [
        ExamSource(exam_id=exam.id, folder=paths[exam.views[View.L_CC][0]].parent,
                   images={v: tuple(_source(n, v, paths) for n in exam.views[v]) for v in VIEWS},
                   horizontal_flip=exam.horizontal_flip)
        for exam in manifest.exams
    ]
    for case, outcome in zip(manifest.exams, run_exams(exams, predictor,
                                                       on_start=_log_exam), strict=True):
        if outcome.failure is not None:
            raise InputError(f"exam {case.id}: {outcome.failure.error}", outcome.failure.hint)
        assert outcome.output is not None and outcome.output.result is not None
        predictions = outcome.output.result.predictions
        for variant, expected in case.expected.items():
            yield from compare(f"exam {case.id}", variant, predictions[variant].as_labels(),
                               expected, manifest.tolerance)


def _log_exam(exam: ExamSource) -> None:
    log.info("view-wise models: exam %s", exam.exam_id)


def run_single(single: SingleCase, manifest: Manifest, paths: Mapping[str, Path],
               locate: Callable[[str], Path], device: torch.device) -> list[Comparison]:
    """The authors' run_single.sh: both image-wise models on one image, each from the seed.

    The image-wise classification of a view alone is exactly their single-image model, so the
    prepared views are restricted to that one image; its per-view values are the result."""
    log.info("image-wise models: %s as %s", single.file, single.view.value)
    config = manifest.config()
    variants = _variants([single.expected])
    models = DmvCnnModels.load(ModelKind.IMAGE_WISE, variants, locate, device, config)
    image = read_view_image(_source(single.file, single.view, paths))
    prepared = {single.view: [prepare_image(image, single.horizontal_flip, config)]}
    rng = ExamRandomness(config.seed)  # fresh: run_single.sh is a process of its own
    heatmaps = models.compute_heatmaps(prepared, rng) if models.needs_heatmaps() else None
    rows: list[Comparison] = []
    for variant, expected in single.expected.items():
        with warnings.catch_warnings():
            # The breast means of classify() average no view for the other side: harmless here,
            # the single-image result is the per-view value.
            warnings.simplefilter("ignore", RuntimeWarning)
            _, per_view, _ = models.classify(variant, prepared, heatmaps, rng, config)
        assert per_view is not None  # image-wise models always give per-view values
        benign, malignant = per_view[single.view]
        rows += compare("single", variant, {"benign": benign, "malignant": malignant},
                        expected, manifest.tolerance)
    return rows


def reproduce(manifest: Manifest, *, source: str = "builtin", registry: Registry | None = None,
              device: torch.device | None = None, progress: bool = True) -> ReproduceReport:
    """Download (verified) weights and samples, run every case, compare with the manifest."""
    started = time.perf_counter()
    registry = registry or load_registry()
    device = device or torch.device("cpu")
    root = download_samples(progress=progress, registry=registry, names=manifest.files)
    paths = sample_paths(manifest, registry, root)

    def locate(name: str) -> Path:
        return resolve_weights(name, progress=progress, registry=registry)

    rows: list[Comparison] = []
    if manifest.exams:
        rows += run_view_wise(manifest, paths, locate, device)
    if manifest.single is not None:
        rows += run_single(manifest.single, manifest, paths, locate, device)
    return ReproduceReport(tuple(rows), manifest.tolerance, source, str(device),
                           time.perf_counter() - started)


# ---- GMIC ---------------------------------------------------------------------------------------


class GmicImageCase(_Strict):
    file: str
    view: View
    expected: dict[str, float]  # benign, malignant: the published y_fusion of the image

    @model_validator(mode="after")
    def _complete(self) -> GmicImageCase:
        if set(self.expected) != set(SINGLE_LABELS):
            raise ValueError(f"{self.file}: expected values must be exactly benign, malignant")
        return self


class GmicExamCase(_Strict):
    id: str
    horizontal_flip: FlipMode = FlipMode.NO
    images: list[GmicImageCase]

    _flip_mode = field_validator("horizontal_flip", mode="before")(_flip)


class GmicManifest(_Strict):
    """What `reproduce --model gmic` runs: per image the published y_fusion of one member, as
    the authors' run_model.py --model-index <member> (no random numbers in GMIC)."""

    comment: str | None = Field(default=None, alias="_comment")
    tolerance: float = Field(default=1e-4, gt=0)
    member: int = Field(default=1, ge=1, le=5)
    exams: list[GmicExamCase] = Field(min_length=1)

    @property
    def files(self) -> list[str]:
        return list(dict.fromkeys(img.file for exam in self.exams for img in exam.images))


def load_gmic_manifest(path: Path | None = None) -> tuple[GmicManifest, str]:
    source = "builtin" if path is None else str(path)
    try:
        text = (resources.files("mammocli.weights").joinpath("reproduce_gmic.json")
                .read_text("utf-8") if path is None else Path(path).read_text("utf-8"))
        return GmicManifest.model_validate(json.loads(text)), source
    except (OSError, ValueError) as exc:  # ValidationError is a ValueError
        raise ConfigError(f"cannot read the GMIC reproduce manifest {source}: "
                          f"{str(exc).splitlines()[0]}",
                          hint="see mammocli/weights/reproduce_gmic.json for the format"
                          ) from None


def reproduce_gmic(manifest: GmicManifest, *, source: str = "builtin",
                   registry: Registry | None = None, device: torch.device | None = None,
                   progress: bool = True) -> ReproduceReport:
    """Download (verified) the member's weights and the samples, classify every image (every
    view, in manifest order) and compare its y_fusion with the expected one."""
    from ..families.gmic import FAMILY as GMIC_FAMILY
    from ..vocabulary import GMIC_MEMBERS

    started = time.perf_counter()
    registry = registry or load_registry()
    device = device or torch.device("cpu")
    entries = {e.name: e for e in registry.samples}
    unknown = [n for n in manifest.files if n not in entries]
    if unknown:
        raise ConfigError(f"the GMIC reproduce manifest uses file(s) the registry "
                          f"{registry.source} does not list: {', '.join(unknown)}",
                          hint="manifest files are the names of the registry's sample entries")
    root = download_samples(progress=progress, registry=registry, names=manifest.files)
    paths = {n: root / (entries[n].exam or "") / n for n in manifest.files}
    variant = GMIC_MEMBERS[manifest.member]
    config = GMIC_FAMILY.preparation(PipelineConfig())
    models = GMIC_FAMILY.load(ModelKind.GMIC, (variant,), lambda name: resolve_weights(
        name, progress=progress, registry=registry), device, config)
    rows: list[Comparison] = []
    for exam in manifest.exams:
        log.info("GMIC model %d: exam %s", manifest.member, exam.id)
        prepared = [prepare_image(read_view_image(_source(img.file, img.view, paths)),
                                  exam.horizontal_flip, config) for img in exam.images]
        y_fusion, _ = models.predict_images(prepared)
        for img, (benign, malignant) in zip(exam.images, y_fusion[variant], strict=True):
            rows += compare(f"exam {exam.id} {img.view.value}", variant.value,
                            {"benign": float(benign), "malignant": float(malignant)},
                            img.expected, manifest.tolerance)
    return ReproduceReport(tuple(rows), manifest.tolerance, source, str(device),
                           time.perf_counter() - started)
