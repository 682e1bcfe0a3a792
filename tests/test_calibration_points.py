"""Operating points: the threshold rule for each target (ties included), CIs that re-choose the
threshold in every resample, exam level = max of the breasts; and the public model at the
reader-study radiologists' mean specificity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mammocli.analysis import metrics
from mammocli.analysis.operating_points import Target, exam_level, operating_point, operating_points
from mammocli.analysis.predictions import load_predictions
from mammocli.analysis.site import match
from mammocli.analysis.tables import Columns, read_labels
from mammocli.errors import ConfigError, InputError

# 4 positives, 8 negatives; scores in descending order of the cases below
Y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.0])
G = [f"e{i}" for i in range(12)]


def point(kind: str, value: float, y=Y, s=S):  # type: ignore[no-untyped-def]
    return operating_point(y, s, G[:len(y)], Target(kind=kind, value=value), "exam",  # type: ignore[arg-type]
                           n_bootstrap=0)


def test_targets_by_hand() -> None:
    # specificity >= 0.75 allows 2 false positives: lowest threshold with fp <= 2 is 0.5
    op = point("specificity", 0.75)
    assert op.threshold.estimate == 0.5
    assert (op.tp, op.fp, op.tn, op.fn) == (3, 2, 6, 1)
    assert op.sensitivity.estimate == 0.75 and op.specificity.estimate == 0.75
    assert op.ppv is not None and op.ppv.estimate == 0.6
    assert op.recall_rate.estimate == 5 / 12
    # sensitivity >= 0.75: the highest threshold reaching 3 of 4 positives is 0.6
    op = point("sensitivity", 0.75)
    assert op.threshold.estimate == 0.6 and (op.tp, op.fp) == (3, 1)
    # recall rate <= 0.25 flags at most 3 of 12: threshold 0.7
    op = point("recall_rate", 0.25)
    assert op.threshold.estimate == 0.7 and op.tp + op.fp == 3
    # specificity 1: no negative flagged, so 0.9 alone
    op = point("specificity", 1.0)
    assert op.threshold.estimate == 0.9 and (op.tp, op.fp) == (1, 0)


def test_ties_flag_together_and_an_unreachable_target_flags_nothing() -> None:
    y = np.array([1, 0, 1, 0, 0, 0])
    s = np.array([0.9, 0.9, 0.5, 0.5, 0.1, 0.1])
    # specificity 1 cannot keep 0.9 (a negative is tied with the positive): flag nothing
    op = point("specificity", 1.0, y, s)
    assert op.threshold.estimate > 0.9 and (op.tp, op.fp) == (0, 0) and op.ppv is None
    assert op.sensitivity.estimate == 0.0 and op.specificity.estimate == 1.0
    # recall rate 0.5 of 6 cases: 3 allowed, but the tie at 0.5 makes it 4; 2 at 0.9
    op = point("recall_rate", 0.5, y, s)
    assert op.threshold.estimate == 0.9 and op.tp + op.fp == 2


def test_cis_re_choose_the_threshold_in_each_resample() -> None:
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.2).astype(np.int64)
    s = np.clip(rng.normal(0.3 + 0.3 * y, 0.15), 0, 1)
    groups = [f"e{i}" for i in range(n)]
    op = operating_point(y, s, groups, Target(kind="specificity", value=0.9), "exam",
                         n_bootstrap=300, seed=0)
    assert op.threshold.ci_low is not None and op.threshold.ci_high is not None
    assert op.threshold.ci_low < op.threshold.estimate < op.threshold.ci_high
    # each resample meets the target on itself: specificity never falls below it ...
    assert op.specificity.ci_low is not None and op.specificity.ci_low >= 0.9
    # ... whereas the fixed threshold on the same resamples misses it about half the time
    group_ids = np.arange(n)
    rows = next(metrics._resample_rows(group_ids, 300, 0, 300))
    fixed = [metrics.threshold_stats(y[r], s[r], op.threshold.estimate).specificity for r in rows]
    assert np.mean(np.array(fixed) < 0.9) > 0.3
    assert op.sensitivity.ci_low is not None and op.sensitivity.ci_high is not None
    assert op.sensitivity.ci_low < op.sensitivity.estimate < op.sensitivity.ci_high
    again = operating_point(y, s, groups, Target(kind="specificity", value=0.9), "exam",
                            n_bootstrap=300, seed=0)
    assert again == op


def test_exam_level_is_the_higher_breast_and_both_levels_are_reported() -> None:
    keys = [("a", "L"), ("a", "R"), ("b", "L"), ("b", "R"), ("c", "L"), ("c", "R")]
    y = np.array([0, 1, 0, 0, 0, 0])
    s = np.array([0.9, 0.2, 0.1, 0.3, 0.5, 0.4])
    exams, ye, se = exam_level(keys, y, s)
    assert exams == ["a", "b", "c"] and ye.tolist() == [1, 0, 0] and se.tolist() == [0.9, 0.3, 0.5]
    ops = operating_points(keys, y, s, [Target(kind="sensitivity", value=1.0)], n_bootstrap=20)
    assert [(o.level, o.n, o.n_positive) for o in ops] == [("exam", 3, 1), ("breast", 6, 1)]
    assert ops[0].threshold.estimate == 0.9 and ops[1].threshold.estimate == 0.2


def test_bad_targets_and_one_class() -> None:
    with pytest.raises(ConfigError, match="--target-specificity 1.5"):
        Target(kind="specificity", value=1.5).check()
    with pytest.raises(ConfigError, match="--recall-rate -0.1"):
        Target(kind="recall_rate", value=-0.1).check()
    with pytest.raises(InputError, match="one class only"):
        point("sensitivity", 0.5, np.zeros(4, dtype=np.int64), S[:4])


def test_reader_study_model_at_the_readers_mean_specificity(reader_study_csv: Path) -> None:
    """The public model (AI_DMVCNN_POM) at the 14 radiologists' mean exam-level specificity.

    A radiologist recalls an exam when they gave either breast a probability of malignancy
    above 0 (their POMs are 0 for "nothing suspicious"). Provenance of the pinned numbers:
    `mammocli calibrate --predictions reader_study_720.csv --labels reader_study_720.csv
    --exam-column case_ID --model-column AI_DMVCNN_POM --target-specificity 0.6168831168831169
    --n-bootstrap 1000 --seed 0` (its exam-level operating point), which this test computes.
    """
    labels = read_labels(reader_study_csv, Columns(exam="case_ID", exam_explicit=True))

    def matched(column: str):  # type: ignore[no-untyped-def]
        preds = load_predictions(reader_study_csv, Columns(exam="case_ID", model=column,
                                                           exam_explicit=True))
        return match(preds, labels, reader_study_csv.name, reader_study_csv.name)

    specificity, sensitivity = [], []
    for r in range(1, 15):
        m = matched(f"Reader{r:02d}_POM")
        _, ye, se = exam_level(m.keys, m.y, m.p)
        stats = metrics.threshold_stats(ye, se, np.nextafter(0.0, 1.0))  # POM > 0
        specificity.append(stats.specificity)
        sensitivity.append(stats.sensitivity)
    readers_spec = float(np.mean(specificity))
    readers_sens = float(np.mean(sensitivity))
    assert round(readers_spec, 4) == 0.6169 and round(readers_sens, 4) == 0.7274

    m = matched("AI_DMVCNN_POM")
    [op] = operating_points(m.keys, m.y, m.p, [Target(kind="specificity", value=readers_spec)],
                            levels=("exam",), n_bootstrap=1000, seed=0)
    assert (op.n, op.n_positive, op.tp, op.fp, op.tn, op.fn) == (720, 60, 41, 252, 408, 19)
    assert round(op.threshold.estimate, 4) == 0.0514
    assert round(op.specificity.estimate, 4) == 0.6182 >= round(readers_spec, 4)
    assert round(op.sensitivity.estimate, 4) == 0.6833
    assert (round(op.sensitivity.ci_low or 0, 3), round(op.sensitivity.ci_high or 0, 3)) == (
        0.541, 0.797)
    # the readers' mean sensitivity lies inside the model's CI: no difference shown here
    assert (op.sensitivity.ci_low or 0) < readers_sens < (op.sensitivity.ci_high or 1)
