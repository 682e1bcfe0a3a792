"""site.json: what a site learnt about the model on its own labelled exams, versioned.

It holds the calibration fit (plain numbers), the operating points, how well the calibration held
under cross-validation, and where it all came from: counts, date, mammocli version, the model
family and the sha256 of every weight file. `SiteFile.apply(result)` refuses a result of other
weights (a calibration is a property of one set of weights on one site's data), and otherwise
gives calibrated probabilities and the flag at each operating point; the raw probabilities of
the result are untouched.

A site file fitted on a predictions CSV names no weights, so it can report but never be applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from .. import __version__
from ..errors import ConfigError, InputError
from ..outputs.schema import (  # noqa: F401 - re-exported: what a site file adds
    CalibratedProbabilities,
    Flag,
    PredictionResult,
    SiteOutputs,
)
from . import calibration, metrics
from .calibration import CalibrationReport, Fit, Method
from .evaluation import evaluate
from .operating_points import LEVELS, Level, OperatingPoint, Target, operating_points
from .predictions import RESULT_SUFFIXES, ModelScores, _json_objects, first_error
from .tables import BreastKey, Labels

SITE_FORMAT = "mammocli-site"
SITE_VERSION = "1.0"  # major.minor: a reader accepts files of its own major version


class SiteMismatchError(ConfigError):
    """A site file given for a result of other weights (or one that names no weights)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WeightRef(_Frozen):
    name: str
    sha256: str


class ModelIdentity(_Frozen):
    """The model that made the predictions: family, its model, the variant read and its weight
    files."""

    family: str  # e.g. "dmv-cnn"
    kind: str  # the family's model, e.g. "view-wise"
    variant: str  # e.g. "image_and_heatmaps"
    weights: list[WeightRef]

    def fingerprint(self) -> dict[str, str]:
        return {w.name: w.sha256 for w in self.weights}


class DataSummary(_Frozen):
    predictions: str  # file or folder name only, never a full path
    labels: str
    n_exams: int
    n_breasts: int
    n_positive_exams: int
    n_positive_breasts: int
    unlabelled_prediction_exams: int
    labelled_exams_without_predictions: int
    failed_predictions: int


class SiteFile(_Frozen):
    format: Literal["mammocli-site"] = "mammocli-site"
    version: str = SITE_VERSION
    created: datetime
    mammocli_version: str
    model: ModelIdentity | None  # None: fitted on a CSV, which names no weights
    data: DataSummary
    calibration: Fit
    calibration_report: CalibrationReport
    operating_points: list[OperatingPoint]
    n_bootstrap: int
    seed: int
    ci_level: float
    warnings: list[str] = []

    _source: str = PrivateAttr(default="site file")

    def calibrate(self, p: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.calibration.apply(np.asarray(p, dtype=np.float64))

    def check(self, result: PredictionResult) -> None:
        """Refuse a result this site file was not fitted for."""
        self.check_model(result.family.value, result.model.value,
                         {w.name: w.sha256 for w in result.weights}, result.primary_variant.value,
                         where="result")

    def check_model(self, family: str, kind: str, weights: dict[str, str],
                    variant: str | None = None, where: str = "run") -> None:
        """Refuse a model other than the one this file was fitted for: its family, model, the
        sha256 of each weight file (`name -> sha256`) and, when known, the variant read. Called
        by `predict --site` once the weights are located, before the first exam."""
        src = self._source
        if self.model is None:
            raise SiteMismatchError(
                f"{src}: fitted on predictions that name no weights (a CSV), so it cannot "
                "check which model it is applied to",
                hint="fit it again on the result JSON of `mammocli predict` "
                     "(`mammocli calibrate --predictions results.jsonl ...`)")
        if (family, kind) != (self.model.family, self.model.kind) or (
                variant is not None and variant != self.model.variant):
            raise SiteMismatchError(
                f"{src}: fitted for the {self.model.kind} model of {self.model.family} "
                f"({self.model.variant}), this {where} is of the {kind} model of {family}"
                + (f" ({variant})" if variant is not None else ""),
                hint="use the site file fitted for this model, or fit one with "
                     "`mammocli calibrate`")
        mine = self.model.fingerprint()
        if mine != weights:
            names = sorted(n for n in set(mine) | set(weights) if mine.get(n) != weights.get(n))
            detail = "; ".join(
                f"{n}: {_short(weights.get(n))} in the {where}, {_short(mine.get(n))} in the site "
                "file" for n in names)
            raise SiteMismatchError(
                f"{src}: fitted on other weights than this {where}'s ({detail})",
                hint="a calibration holds for the weights it was fitted on: use the site file "
                     "of these weights, or fit one on their predictions with `mammocli calibrate`")

    def apply(self, result: PredictionResult) -> SiteOutputs:
        """Calibrated malignant probabilities and operating-point flags for one result."""
        self.check(result)
        p = result.primary
        raw = np.array([p.left.malignant, p.right.malignant])
        left, right = (float(v) for v in self.calibrate(raw))
        flags = []
        for op in self.operating_points:
            t = op.threshold.estimate
            flag_l, flag_r = bool(raw[0] >= t), bool(raw[1] >= t)
            flags.append(Flag(operating_point=op.name, level=op.level, threshold=t, left=flag_l,
                              right=flag_r, exam=flag_l or flag_r))
        return SiteOutputs(
            site_created=self.created, method=self.calibration.method,
            calibrated_malignant=CalibratedProbabilities(left=left, right=right,
                                                         exam=max(left, right)),
            flags=flags)

    def stamp(self, result: PredictionResult) -> PredictionResult:
        """The result with its site outputs added (`predict --site`)."""
        return result.model_copy(update={"site": self.apply(result)})

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def _short(sha: str | None) -> str:
    return "absent" if sha is None else f"sha256 {sha[:12]}"


def load_site(path: Path) -> SiteFile:
    """Read and check a site file; errors name the file and the field."""
    name = path.name
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{name}: not a JSON file ({exc})",
                         hint="give the site.json written by `mammocli calibrate`") from None
    if not isinstance(doc, dict) or doc.get("format") != SITE_FORMAT:
        raise InputError(f"{name}: not a mammocli site file (no \"format\": \"{SITE_FORMAT}\")",
                         hint="give the site.json written by `mammocli calibrate`")
    version = str(doc.get("version", ""))
    if version.split(".")[0] != SITE_VERSION.split(".")[0]:
        raise InputError(f"{name}: site file version {version!r}; this mammocli reads "
                         f"{SITE_VERSION.split('.')[0]}.x",
                         hint="use the mammocli that wrote it, or fit it again with "
                              "`mammocli calibrate`")
    try:
        site = SiteFile.model_validate(doc)
    except ValidationError as exc:
        raise InputError(f"{name}: not a valid site file ({first_error(exc)})",
                         hint="fit it again with `mammocli calibrate`") from None
    site._source = name
    return site


def iter_results(path: Path) -> Iterator[tuple[str, PredictionResult]]:
    """("file, line N", result) for each successful, valid result under `path` (a result file
    or a folder of them); nothing for a CSV. Invalid lines are skipped: load_predictions
    reports them, with their line."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in RESULT_SUFFIXES)
        base = path
    elif path.suffix.lower() in RESULT_SUFFIXES:
        files, base = [path], path.parent
    else:
        return
    for file in files:
        name = str(file.relative_to(base))
        for line, obj in _json_objects(file):
            if not isinstance(obj, dict) or obj.get("status") == "failed":
                continue
            try:
                yield f"{name}, line {line}", PredictionResult.model_validate(obj)
            except ValidationError:
                continue


def read_model_identity(path: Path) -> ModelIdentity | None:
    """The model of the results under `path` (a result file or a folder of them); None for a CSV.

    Every successful result must come from the same family, variant and weights."""
    found: ModelIdentity | None = None
    first_where = ""
    for where, result in iter_results(path):
        identity = ModelIdentity(
            family=result.family.value, kind=result.model.value,
            variant=result.primary_variant.value,
            weights=sorted((WeightRef(name=w.name, sha256=w.sha256) for w in result.weights),
                           key=lambda w: w.name))
        if found is None:
            found, first_where = identity, where
        elif identity != found:
            raise InputError(
                f"{where}: from another model or other weights than {first_where}",
                hint="calibrate the results of one model and one set of weights at a time")
    return found


@dataclass(frozen=True)
class Matched:
    """Per-breast labels and raw malignant probabilities of the exams in both inputs."""

    keys: list[BreastKey]
    y: NDArray[np.int64]
    p: NDArray[np.float64]
    data: DataSummary
    warnings: list[str]


def match(preds: ModelScores, labels: Labels, predictions_name: str,
          labels_name: str) -> Matched:
    ev = evaluate(preds, labels, thresholds=[], n_bootstrap=0)  # matching and checks only
    r = ev.report
    y, p = ev.labels["malignant"], ev.scores["malignant"]
    ye, _ = ev.exam_level("malignant")
    data = DataSummary(
        predictions=predictions_name, labels=labels_name, n_exams=len(ye), n_breasts=len(y),
        n_positive_exams=int(ye.sum()), n_positive_breasts=int(y.sum()),
        unlabelled_prediction_exams=len(r.unlabelled_prediction_exams),
        labelled_exams_without_predictions=len(r.labelled_exams_without_predictions),
        failed_predictions=len(r.failed_predictions))
    return Matched(ev.keys, y, p, data, [*r.warnings, *r.failed_predictions])


def build_site(m: Matched, identity: ModelIdentity | None, method: Method = "logistic",
               targets: list[Target] | None = None, levels: tuple[Level, ...] = LEVELS,
               folds: int = calibration.DEFAULT_FOLDS,
               n_bootstrap: int = metrics.DEFAULT_RESAMPLES, seed: int = 0,
               ci_level: float = metrics.DEFAULT_CI_LEVEL, n_bins: int = calibration.DEFAULT_BINS,
               now: datetime | None = None) -> SiteFile:
    """Fit on all matched breasts; report the calibration by cross-validation; operating points
    on the raw scores (a threshold on the raw score is exact; calibration keeps the order)."""
    groups = [k[0] for k in m.keys]
    fitted = calibration.fit(m.y, m.p, method)
    held_out = calibration.cross_validated(m.y, m.p, groups, method, folds, seed)
    report = calibration.assess(m.y, m.p, held_out, groups, method,
                                f"{folds}-fold cross-validation by exam", n_bootstrap, seed,
                                ci_level, n_bins)
    points = operating_points(m.keys, m.y, m.p, targets or [], levels, n_bootstrap, seed, ci_level)
    points = [op.model_copy(update={"calibrated_threshold": float(
        fitted.apply(np.array([op.threshold.estimate]))[0])}) for op in points]
    warnings = list(m.warnings)
    if identity is None:
        warnings.append("the predictions name no weights (a CSV): this site file reports, but "
                        "cannot be applied to results")
    return SiteFile(
        created=now or datetime.now(timezone.utc).replace(microsecond=0),
        mammocli_version=__version__, model=identity, data=m.data, calibration=fitted,
        calibration_report=report, operating_points=points, n_bootstrap=n_bootstrap,
        seed=seed, ci_level=ci_level, warnings=warnings)
