"""What `evaluate` adds at a new site: the shift report by header fields (`--by-header`), the
inputs of the HTML report (`--report`), and the site file's operating points measured on these
labels (`--site`, or the flags of results stamped by `predict --site`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError, InputError
from ..io.dicom.header_fields import ALLOWED_FIELDS
from ..outputs.schema import Flag
from . import calibration
from .calibration import CalibrationReport
from .evaluation import Evaluated
from .operating_points import Level, OperatingPoint, Target, at_threshold, exam_level
from .predictions import ModelScores
from .shift import ShiftReport, shift_from_evaluated
from .site import SiteFile, SiteMismatchError, iter_results, load_site, read_model_identity


def parse_fields(specs: Sequence[str]) -> list[str]:
    """`--by-header Manufacturer,KVP --by-header ImageSize` -> the field names, checked against
    the allow-list."""
    fields = [f.strip() for spec in specs for f in spec.split(",") if f.strip()]
    unknown = [f for f in fields if f not in ALLOWED_FIELDS]
    if unknown:
        raise ConfigError(f"--by-header {', '.join(unknown)}: not a field results carry",
                          hint=f"choose from {', '.join(ALLOWED_FIELDS)}")
    return list(dict.fromkeys(fields))


def shift_by_header(ev: Evaluated, preds: ModelScores, fields: Sequence[str]) -> ShiftReport:
    """The exam-level shift report of the evaluated exams by their results' header fields."""
    if not preds.headers:
        raise InputError("--by-header: the predictions carry no header fields",
                         hint="give the result JSON of `mammocli predict` (a CSV has none; "
                              "results of mammocli before 0.2 neither: predict again)")
    return shift_from_evaluated(ev, preds.headers, list(fields))


def reliability(ev: Evaluated, raw: ModelScores | None, calibrated: bool, folds: int = 5,
                seed: int = 0) -> tuple[CalibrationReport | None, str | None]:
    """Brier/ECE and reliability of the evaluated (breast-level malignant) scores: with
    calibrated scores, raw against the site file's calibration (`raw`: the same results read
    raw); otherwise raw against a logistic fit cross-validated on these labels (what a
    calibration fitted here would give). (None, why) when the labels do not allow it."""
    y, s = ev.labels["malignant"], ev.scores["malignant"]
    groups = [k[0] for k in ev.keys]
    r = ev.report
    if calibrated:
        assert raw is not None
        before = np.array([raw.malignant[k] for k in ev.keys])
        return calibration.assess(y, before, s, groups, "site file", "the site file's "
                                  "calibration (fitted on other exams), on these labels",
                                  r.n_bootstrap, r.seed, r.ci_level), None
    try:
        held_out = calibration.cross_validated(y, s, groups, "logistic",
                                               min(folds, len(set(groups))), seed)
    except (ConfigError, InputError) as exc:
        return None, f"no reliability diagram: {exc}"
    return calibration.assess(y, s, held_out, groups, "logistic",
                              f"{min(folds, len(set(groups)))}-fold cross-validation by exam "
                              "(a fit on these labels)", r.n_bootstrap, r.seed,
                              r.ci_level), None


# --- the site's operating points on these labels (`evaluate --site`) -------------------------


@dataclass(frozen=True)
class StoredPoint:
    """An operating point as a site file (or a result it stamped) stores it."""

    name: str  # e.g. "exam specificity 0.9"
    level: Level
    target: Target
    threshold: float  # on the raw malignant probability
    calibrated_threshold: float | None = None


class SitePoints(BaseModel):
    """A site file's operating points measured on the evaluated labels, at the stored thresholds
    (on the raw probability, whatever `--score` evaluates: the flags of `predict --site` use
    the raw one). `fitted`: the same points as measured where the site file was fitted (empty
    when the points come from the results' flags, which carry the thresholds only)."""

    model_config = ConfigDict(frozen=True)

    source: str  # the site file's name, or "the results' flags (predict --site)"
    site_created: datetime | None
    points: list[OperatingPoint]
    fitted: list[OperatingPoint]


FLAGS_SOURCE = "the results' flags (predict --site)"


def site_file_points(site: SiteFile, predictions: Path) -> list[StoredPoint]:
    """The operating points of `site`, once it is checked to belong to the predictions' model
    and weights (SiteMismatchError, exit 2, otherwise)."""
    identity = read_model_identity(predictions)
    if identity is None:
        raise SiteMismatchError(
            f"--site {site._source}: {predictions.name} names no weights (a CSV), so it cannot "
            "be checked against the site file's model",
            hint="evaluate the result JSON of `mammocli predict` with --site")
    site.check_model(identity.family, identity.kind, identity.fingerprint(), identity.variant,
                     where="predictions")
    return [StoredPoint(op.name, op.level, op.target, op.threshold.estimate,
                        op.calibrated_threshold) for op in site.operating_points]


def _parse_point(flag: Flag, where: str) -> StoredPoint:
    """A flag's operating point: its name reads "<level> <target kind> <value>"."""
    parts = flag.operating_point.split(" ")
    try:
        if len(parts) != 3 or parts[0] != flag.level:
            raise ValueError
        target = Target.model_validate({"kind": parts[1], "value": float(parts[2])})
    except (ValueError, ValidationError):
        raise InputError(f"{where}: site flag {flag.operating_point!r} is not an operating "
                         "point mammocli wrote",
                         hint="give the site file with --site instead") from None
    return StoredPoint(flag.operating_point, flag.level, target, flag.threshold)


def stamped_points(predictions: Path) -> tuple[list[StoredPoint], datetime | None, list[str]]:
    """The operating points of the flags `predict --site` added to the results, when every
    result has the same ones; ([], None, warnings) when not every result is stamped."""
    seen: tuple[tuple[str, str, float], ...] | None = None
    first = ""
    points: list[StoredPoint] = []
    created: datetime | None = None
    unstamped = total = 0
    for where, result in iter_results(predictions):
        total += 1
        if result.site is None:
            unstamped += 1
            continue
        key = tuple((f.operating_point, f.level, f.threshold) for f in result.site.flags)
        if seen is None:
            seen, first, created = key, where, result.site.site_created
            points = [_parse_point(f, where) for f in result.site.flags]
        elif key != seen:
            raise InputError(f"{where}: other operating points than {first} (results of "
                             "different site files)",
                             hint="evaluate the results of one site file, or give it with "
                                  "--site")
    if seen is not None and unstamped:
        return [], None, [f"{unstamped} of {total} results have no site flags: the site's "
                          "operating points are not evaluated (give --site site.json)"]
    return points, created, []


def measure_points(ev: Evaluated, raw: ModelScores, stored: Sequence[StoredPoint]
                   ) -> list[OperatingPoint]:
    """Each stored point at its threshold on the evaluated labels and raw scores, with the
    evaluation's bootstrap (resamples, seed, CI level)."""
    r = ev.report
    y = ev.labels["malignant"]
    s = np.array([raw.malignant[k] for k in ev.keys], dtype=np.float64)
    exams, ye, se = exam_level(ev.keys, y, s)
    data = {"exam": (ye, se, exams), "breast": (y, s, [k[0] for k in ev.keys])}
    out = []
    for p in stored:
        yl, sl, groups = data[p.level]
        op = at_threshold(yl, sl, groups, p.threshold, p.target, p.level, r.n_bootstrap,
                          r.seed, r.ci_level)
        out.append(op.model_copy(update={"calibrated_threshold": p.calibrated_threshold}))
    return out


def site_points(ev: Evaluated, raw: ModelScores, predictions: Path,
                site_path: Path | None) -> tuple[SitePoints | None, list[str]]:
    """`evaluate --site site.json`, or without it the flags of stamped results: the site's
    operating points on these labels (None when there are none), and warnings. `raw`: the
    predictions read with their raw probabilities (what the thresholds apply to)."""
    created: datetime | None
    if site_path is not None:
        site = load_site(site_path)
        stored = site_file_points(site, predictions)
        source, created, fitted = site_path.name, site.created, list(site.operating_points)
        warnings: list[str] = []
    else:
        stored, created, warnings = stamped_points(predictions)
        source, fitted = FLAGS_SOURCE, []
    if not stored:
        if site_path is not None:
            warnings.append(f"{site_path.name}: no operating points to evaluate")
        return None, warnings
    return SitePoints(source=source, site_created=created,
                      points=measure_points(ev, raw, stored), fitted=fitted), warnings
