"""`hybrid` and `evaluate` warn, on stderr and in their JSON, when a set is too small for its
bootstrap CIs: how many resamples were skipped and how many exams are needed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mammocli.analysis.metrics import MIN_EXAMS_PER_CLASS, bootstrap, ci_size_warning
from mammocli.cli.app import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


def _skipped_in(warning: str) -> int:
    match = re.search(r"(\d+) of (\d+) resamples held one class only", warning)
    assert match, warning
    return int(match.group(1))


def test_hybrid_of_four_exams_warns_with_the_skipped_resamples() -> None:
    r = runner.invoke(app, ["hybrid", "--radiologist-scores", str(EXAMPLES / "scores.csv"),
                            "--predictions", str(EXAMPLES / "predictions.csv"),
                            "--n-bootstrap", "300"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    small = [w for w in out["warnings"] if "too few exams" in w]
    assert len(small) == 1
    skipped = out["metrics"]["resamples_skipped"]
    assert skipped > 0 and _skipped_in(small[0]) == skipped
    assert f"at least {MIN_EXAMS_PER_CLASS} exams of each class" in small[0]
    assert "too few exams" in " ".join(r.stderr.split())  # and on stderr


def test_evaluate_of_four_exams_warns_per_level(tmp_path: Path) -> None:
    from test_hybrid import result

    folder = tmp_path / "results"
    folder.mkdir()
    with (folder / "all.jsonl").open("w") as f:
        for exam, left, right in [("a", 0.9, 0.1), ("b", 0.2, 0.3), ("c", 0.1, 0.7),
                                  ("d", 0.4, 0.05)]:
            f.write(json.dumps(result(exam, left, right)) + "\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("exam_id,side,label\na,L,1\na,R,0\nb,L,0\nb,R,0\nc,L,0\nc,R,1\n"
                      "d,L,0\nd,R,0\n")
    r = runner.invoke(app, ["evaluate", "--predictions", str(folder), "--labels", str(labels),
                            "--n-bootstrap", "200"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    by_level = {w.split(":")[0]: w for w in out["warnings"] if "too few exams" in w}
    assert set(by_level) == {"breast-level malignant labels", "exam-level malignant labels"}
    exam = by_level["exam-level malignant labels"]
    assert "2 with a positive and 2 with a negative label" in exam
    assert _skipped_in(exam) == out["exam_level"]["malignant"]["resamples_skipped"] > 0
    assert "too few exams" in r.stderr


def test_no_warning_for_a_set_large_enough_or_without_cis() -> None:
    rng = np.random.default_rng(0)
    exams = np.repeat(np.arange(40), 2)
    y = np.zeros(80, dtype=np.int64)
    y[::4] = 1  # one positive breast in every other exam: 20 positive, 40 negative exams
    s = rng.random(80) + y
    draws = bootstrap(y, s, exams, 500, seed=0)
    assert draws.skipped == 0
    assert ci_size_warning("x", y, exams, draws.skipped, 500) is None
    assert ci_size_warning("x", y[:16], exams[:16], 0, 0) is None  # no bootstrap, no CI
    warning = ci_size_warning("x", y[:16], exams[:16], 0, 500)  # 4 positive exams
    assert warning is not None and "4 with a positive and 8 with a negative" in warning
