"""`evaluate --site`: a site file's operating points at their stored thresholds on new labels,
in the JSON, the report and as dots on the ROC; refused for other weights (issue 17)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mammocli.analysis.curves import roc_figure, summarize
from mammocli.analysis.evaluation import evaluate
from mammocli.analysis.operating_points import Target, at_threshold, operating_point
from mammocli.analysis.predictions import load_predictions
from mammocli.analysis.report import evaluation_cases
from mammocli.analysis.site import load_site
from mammocli.analysis.site_evaluation import measure_points, site_file_points, stamped_points
from mammocli.analysis.tables import read_labels
from mammocli.cli.app import app
from mammocli.cli.columns import make_columns
from mammocli.outputs.schema import PredictionResult

runner = CliRunner()
COLUMNS = make_columns(None, "side", "label", None)


def _result(exam: str, left: float, right: float, sha: str = "a" * 64) -> dict[str, Any]:
    probs = {"left": {"benign": 0.1, "malignant": left},
             "right": {"benign": 0.1, "malignant": right}}
    return {"exam_id": exam, "family": "dmv-cnn", "model": "view-wise", "views": {},
            "predictions": {"image_only": probs}, "primary_variant": "image_only",
            "device": "cpu", "seed": 0, "rng_mode": "exam", "tta": 1, "duration_s": 0.1,
            "weights": [{"name": "sample_image_model.p", "sha256": sha}],
            "mammocli_version": "0.1.0"}


def _cohort(folder: Path, name: str, n: int, seed: int, shift: float = 0.0,
            sha: str = "a" * 64) -> tuple[Path, Path]:
    """n exams of one model; malignant breasts score higher; `shift` moves every logit."""
    rng = np.random.default_rng(seed)
    lines, labels = [], ["exam_id,side,label"]
    for i in range(n):
        y = (rng.random(2) < 0.2).astype(int)
        if i < 2:
            y = np.array([1 - i, i])
        p = 1 / (1 + np.exp(-(rng.normal(-2.0 + shift, 0.8, 2) + 1.8 * y)))
        lines.append(json.dumps(_result(f"{name}{i}", float(p[0]), float(p[1]), sha)))
        labels += [f"{name}{i},L,{y[0]}", f"{name}{i},R,{y[1]}"]
    results, labels_csv = folder / f"{name}.jsonl", folder / f"{name}_labels.csv"
    results.write_text("\n".join(lines) + "\n")
    labels_csv.write_text("\n".join(labels) + "\n")
    return results, labels_csv


@pytest.fixture()
def fitted(tmp_path: Path) -> tuple[Path, Path, Path]:
    """site.json fitted on 60 exams; new results (40 exams, scores shifted up) and labels."""
    fit_results, fit_labels = _cohort(tmp_path, "fit", 60, seed=1)
    site = tmp_path / "site.json"
    r = runner.invoke(app, ["calibrate", "--predictions", str(fit_results), "--labels",
                            str(fit_labels), "--target-specificity", "0.8", "--recall-rate",
                            "0.3", "--folds", "2", "--n-bootstrap", "20", "-q", "-o",
                            str(site)])
    assert r.exit_code == 0, r.stderr
    new_results, new_labels = _cohort(tmp_path, "new", 40, seed=2, shift=0.7)
    return site, new_results, new_labels


def _by_hand(results: Path, labels: Path, threshold: float, level: str) -> dict[str, int]:
    scores = load_predictions(results, COLUMNS, "raw").malignant
    y = {(e, s): int(v) for e, s, v in (ln.split(",") for ln in
                                         labels.read_text().splitlines()[1:])}
    if level == "exam":
        exams = sorted({k[0] for k in y})
        cases = [(max(y[(e, "L")], y[(e, "R")]), max(scores[(e, "L")], scores[(e, "R")]))
                 for e in exams]
    else:
        cases = [(y[k], scores[k]) for k in sorted(y)]
    tp = sum(1 for lab, s in cases if lab and s >= threshold)
    fp = sum(1 for lab, s in cases if not lab and s >= threshold)
    pos = sum(lab for lab, _ in cases)
    return {"tp": tp, "fp": fp, "fn": pos - tp, "tn": len(cases) - pos - fp}


def test_evaluate_measures_the_site_points_at_their_stored_thresholds(
        fitted: tuple[Path, Path, Path], tmp_path: Path) -> None:
    site_path, results, labels = fitted
    site = load_site(site_path)
    assert len(site.operating_points) == 4  # 2 targets x exam, breast
    report, plots = tmp_path / "report.html", tmp_path / "plots"
    r = runner.invoke(app, ["evaluate", "--predictions", str(results), "--labels", str(labels),
                            "--site", str(site_path), "--n-bootstrap", "200", "--report",
                            str(report), "--plots", str(plots)])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)["operating_points"]
    assert doc["source"] == "site.json"
    assert [p["name"] for p in doc["points"]] == [op.name for op in site.operating_points]
    assert doc["fitted"] == json.loads(json.dumps(
        [op.model_dump(mode="json") for op in site.operating_points]))
    for stored, here in zip(site.operating_points, doc["points"], strict=True):
        t = stored.threshold.estimate
        # the stored threshold, not one re-chosen on these labels; fixed, so it has no CI
        assert here["threshold"] == {"estimate": t, "ci_low": None, "ci_high": None}
        assert here["calibrated_threshold"] == stored.calibrated_threshold
        counts = _by_hand(results, labels, t, stored.level)
        assert {k: here[k] for k in counts} == counts
        pos, neg = counts["tp"] + counts["fn"], counts["tn"] + counts["fp"]
        assert here["sensitivity"]["estimate"] == pytest.approx(counts["tp"] / pos)
        assert here["specificity"]["estimate"] == pytest.approx(counts["tn"] / neg)
        assert here["recall_rate"]["estimate"] == pytest.approx(
            (counts["tp"] + counts["fp"]) / (pos + neg))
        for m in ("sensitivity", "specificity", "recall_rate"):
            e = here[m]
            assert e["ci_low"] <= e["estimate"] <= e["ci_high"]
        assert here["specificity"]["ci_low"] < here["specificity"]["ci_high"]  # resampled
    # the new site's scores run higher: at the fitted specificity 0.8, fewer are met here
    spec = {p["name"]: p["specificity"]["estimate"] for p in doc["points"]}
    assert spec["exam specificity 0.8"] < 0.8
    # the table on stderr, the report's section with both tables
    assert "operating points of site.json on these labels" in " ".join(r.stderr.split())
    text = report.read_text()
    assert "<h2>Operating points</h2>" in text
    assert "the same points where the site file was fitted" in text
    assert "measured on these labels" in text
    assert (plots / "roc.png").is_file()


def test_the_roc_marks_the_site_points_as_dots(fitted: tuple[Path, Path, Path]) -> None:
    site_path, results, labels = fitted
    raw = load_predictions(results, COLUMNS, "raw")
    ev = evaluate(raw, read_labels(labels, COLUMNS), n_bootstrap=0)
    ops = measure_points(ev, raw, site_file_points(load_site(site_path), results))
    cases = evaluation_cases(ev, ops)
    fig = roc_figure([summarize(c, 0) for c in cases])
    ax = fig.axes[0]
    labels_shown = [t.get_text() for t in ax.get_legend().get_texts()]
    for op in ops:
        assert f"{op.name} (threshold {op.threshold.estimate:.3g})" in labels_shown
    # each dot sits at (1 - specificity, sensitivity)
    dots = [ln for ln in ax.get_lines() if ln.get_marker() not in ("None", "", None)]
    xy = {(round(float(ln.get_xdata()[0]), 9), round(float(ln.get_ydata()[0]), 9))
          for ln in dots}
    for op in ops:
        assert (round(1 - op.specificity.estimate, 9), round(op.sensitivity.estimate, 9)) in xy


def test_a_site_file_of_other_weights_is_refused(fitted: tuple[Path, Path, Path],
                                                  tmp_path: Path) -> None:
    site_path, _, _ = fitted
    other, other_labels = _cohort(tmp_path, "other", 10, seed=3, sha="b" * 64)
    r = runner.invoke(app, ["evaluate", "--predictions", str(other), "--labels",
                            str(other_labels), "--site", str(site_path), "-q"])
    assert r.exit_code == 2, r.stderr
    assert "fitted on other weights" in r.stderr and "sample_image_model.p" in r.stderr
    assert r.stdout == ""
    # a CSV names no weights: it cannot be checked, so it is refused too
    csv = tmp_path / "p.csv"
    csv.write_text("exam_id,left_malignant,right_malignant\n" + "".join(
        f"other{i},0.1,0.2\n" for i in range(10)))
    r = runner.invoke(app, ["evaluate", "--predictions", str(csv), "--labels",
                            str(other_labels), "--site", str(site_path), "-q"])
    assert r.exit_code == 2 and "names no weights" in r.stderr


def test_stamped_results_carry_their_points_without_site(
        fitted: tuple[Path, Path, Path], tmp_path: Path) -> None:
    site_path, results, labels = fitted
    site = load_site(site_path)
    stamped = tmp_path / "stamped.jsonl"
    stamped.write_text("".join(
        site.stamp(PredictionResult.model_validate_json(line)).model_dump_json() + "\n"
        for line in results.read_text().splitlines()))
    points, created, warnings = stamped_points(stamped)
    assert [(p.name, p.level, p.target, p.threshold) for p in points] == [
        (op.name, op.level, op.target, op.threshold.estimate) for op in site.operating_points]
    assert created == site.created and warnings == []
    with_site = runner.invoke(app, ["evaluate", "--predictions", str(results), "--labels",
                                    str(labels), "--site", str(site_path), "-q",
                                    "--n-bootstrap", "50"])
    from_flags = runner.invoke(app, ["evaluate", "--predictions", str(stamped), "--labels",
                                     str(labels), "-q", "--n-bootstrap", "50"])
    assert with_site.exit_code == 0 and from_flags.exit_code == 0, from_flags.stderr
    a = json.loads(with_site.stdout)["operating_points"]
    b = json.loads(from_flags.stdout)["operating_points"]
    assert b["source"] == "the results' flags (predict --site)" and b["fitted"] == []
    # the same points on the same labels: the thresholds apply to the raw probability,
    # though the stamped results are evaluated calibrated (--score auto)
    keys = ("name", "threshold", "sensitivity", "specificity", "ppv", "recall_rate", "tp", "fp")
    assert [{k: p[k] for k in keys} for p in a["points"]] == \
           [{k: p[k] for k in keys} for p in b["points"]]
    assert json.loads(from_flags.stdout)["model_source"] == \
        "results (calibrated by the site file)"
    # unstamped results and no --site: no operating-point section
    plain = runner.invoke(app, ["evaluate", "--predictions", str(results), "--labels",
                                str(labels), "-q", "--n-bootstrap", "0"])
    assert "operating_points" not in json.loads(plain.stdout)


def test_at_threshold_keeps_the_threshold_and_resamples_the_labels() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(int)
    s = rng.normal(0, 1, 300) + 1.5 * y
    groups = [str(i) for i in range(300)]
    target = Target(kind="specificity", value=0.9)
    chosen = operating_point(y, s, groups, target, "exam", n_bootstrap=0)
    fixed = at_threshold(y, s, groups, chosen.threshold.estimate, target, "exam",
                         n_bootstrap=300, seed=1)
    # on the labels it was chosen on, the fixed threshold gives the same counts
    assert (fixed.tp, fixed.fp, fixed.tn, fixed.fn) == (chosen.tp, chosen.fp, chosen.tn,
                                                        chosen.fn)
    assert fixed.threshold.ci_low is None
    sens = fixed.sensitivity
    assert sens.ci_low is not None and sens.ci_high is not None
    assert sens.ci_low < sens.estimate < sens.ci_high
    # a threshold above every score flags nothing: no PPV, recall rate 0
    none = at_threshold(y, s, groups, float(s.max()) + 1, target, "exam", n_bootstrap=20)
    assert none.ppv is None and none.recall_rate.estimate == 0.0 and none.tp == 0


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless render needs Debian's `chromium` "
                                                 "(apt-get install chromium); not in CI")
def test_the_report_evaluate_writes_renders_in_headless_chromium(
        fitted: tuple[Path, Path, Path], tmp_path: Path) -> None:
    site_path, results, labels = fitted
    report = tmp_path / "report.html"
    r = runner.invoke(app, ["evaluate", "--predictions", str(results), "--labels", str(labels),
                            "--site", str(site_path), "--n-bootstrap", "50", "-q",
                            "--report", str(report)])
    assert r.exit_code == 0, r.stderr
    shot = tmp_path / "shot.png"
    subprocess.run([str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri()],
                   check=True, capture_output=True, timeout=120)
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert rgb.shape == (2400, 1280, 3)
    grey = rgb.mean(axis=2)
    # not blank: text, tables and figures over much of the page, not one colour
    assert grey.std() > 20 and (grey < 128).any(axis=1).mean() > 0.3
    # the figures rendered (a missing image shows no colour): the curves' default blue
    # (matplotlib's C0, #1f77b4) and orange (C1, #ff7f0e) lines, bands and dots
    for colour in ((31, 119, 180), (255, 127, 14)):
        near = (np.abs(rgb - np.array(colour)).max(axis=2) < 40).sum()
        assert near > 500, colour
