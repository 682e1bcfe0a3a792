"""What `evaluate` adds at a new site: the shift report by header fields (`--by-header`) and the
inputs of the HTML report (`--report`), from an evaluation and the predictions it read."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, InputError
from ..io.dicom.header_fields import ALLOWED_FIELDS
from . import calibration
from .calibration import CalibrationReport
from .evaluation import Evaluated
from .predictions import ModelScores
from .shift import ShiftReport, shift_from_evaluated


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
