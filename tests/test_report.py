"""The HTML report: one self-contained file (every image a data: URI, no external reference),
the tables and figures of each section, user strings escaped; rendered by headless Chromium
where it is installed. Built from the public reader-study file (one realistic report)."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammocli.analysis import calibration
from mammocli.analysis.curves import reader_points
from mammocli.analysis.evaluation import Subgroup, evaluate
from mammocli.analysis.hybrid import read_reader_scores
from mammocli.analysis.operating_points import Target, exam_level, operating_points
from mammocli.analysis.predictions import load_predictions
from mammocli.analysis.report import ReportInputs, report_html, write_report
from mammocli.analysis.shift import shift_from_evaluated
from mammocli.analysis.tables import Columns, read_labels

HOSTILE = '<script>alert("x")</script> & <img src=https://example.org/t.png>'
READERS_MEAN_SPECIFICITY = 0.6168831168831169  # tests/test_calibration_points.py


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.captions: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_caption = tag == "caption"

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self._in_caption = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_caption:
            self.captions.append(data)


@pytest.fixture(scope="module")
def inputs(reader_study_csv: Path) -> ReportInputs:
    model = Columns(exam="case_ID", model="AI_DMVCNN_POM", exam_explicit=True)
    preds = load_predictions(reader_study_csv, model)
    labels = read_labels(reader_study_csv, Columns(exam="case_ID", exam_explicit=True))
    ev = evaluate(preds, labels, thresholds=[0.05, 0.5], by=[Subgroup("side")], n_bootstrap=200,
                  seed=0)
    y, p = ev.labels["malignant"], ev.scores["malignant"]
    exams = [k[0] for k in ev.keys]
    # logistic calibration fitted on half the exams, assessed on the other half
    ids = sorted(set(exams))
    train = {e for i, e in enumerate(ids) if i % 2 == 0}
    tr = np.array([e in train for e in exams])
    fit = calibration.fit(y[tr], p[tr], "logistic")
    cal = calibration.assess(y[~tr], p[~tr], fit.apply(p[~tr]),
                             [e for e, t in zip(exams, tr, strict=True) if not t], "logistic",
                             "the held-out half of the exams", n_bootstrap=200, seed=0)
    ops = operating_points(ev.keys, y, p, [Target(kind="specificity",
                                                  value=READERS_MEAN_SPECIFICITY)],
                           n_bootstrap=200, seed=0)
    rs = read_reader_scores(reader_study_csv, Columns(exam="case_ID", readers=("Reader*_POM",),
                                                      exam_explicit=True))
    assert rs.keys == ev.keys
    per_exam = np.stack([exam_level(rs.keys, y, rs.scores[:, j])[2]
                         for j in range(len(rs.readers))], axis=1)
    readers = reader_points(ev.exam_level("malignant")[0], per_exam, rs.readers)
    headers = {e: {"Manufacturer": HOSTILE if i % 3 == 0 else "Vendor B"}
               for i, e in enumerate(ids)}
    shift = shift_from_evaluated(ev, headers, fields=["Manufacturer"])
    return ReportInputs(evaluation=ev, calibration=cal, operating_points=ops, shift=shift,
                        readers=readers,
                        sources={"predictions": reader_study_csv.name, "labels": HOSTILE})


@pytest.fixture(scope="module")
def page(inputs: ReportInputs, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(path, inputs, title=f"site {HOSTILE}",
                 created=datetime(2024, 5, 1, tzinfo=timezone.utc))
    return path, path.read_text(encoding="utf-8")


def test_report_is_self_contained(page: tuple[Path, str]) -> None:
    path, doc = page
    parsed = _Page()
    parsed.feed(doc)
    images = [a for tag, a in parsed.tags if tag == "img"]
    # ROC, PR, reliability, forest plot: each an inline PNG
    assert len(images) == 4
    for attrs in images:
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,")
        png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert png.format == "PNG" and png.size[0] >= 400
        assert attrs.get("alt")
    # nothing that loads from elsewhere: no scripts, stylesheets, frames or URL attributes
    assert not {tag for tag, _ in parsed.tags} & {"script", "link", "iframe", "object", "embed"}
    for _, attrs in parsed.tags:
        for name, value in attrs.items():
            assert not (value or "").lower().startswith(("http:", "https:", "//")), name
    # the only URL in the file is the one in the hostile user string, as escaped text
    rest = doc.replace(html_escaped(HOSTILE), "")
    assert "http://" not in rest and "https://" not in rest
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary left


def test_user_strings_are_escaped(page: tuple[Path, str]) -> None:
    _, doc = page
    parsed = _Page()
    parsed.feed(doc)
    # the hostile string arrives as text (title, sources, shift table, warnings), never as markup
    text = "".join(parsed.text)
    assert text.count(HOSTILE) >= 3
    assert HOSTILE not in doc and html_escaped(HOSTILE) in doc
    assert [tag for tag, _ in parsed.tags].count("img") == 4  # the hostile <img> is not one


def html_escaped(s: str) -> str:
    import html
    return html.escape(s, quote=True)


def test_report_holds_the_tables_and_numbers(page: tuple[Path, str],
                                             inputs: ReportInputs) -> None:
    _, doc = page
    parsed = _Page()
    parsed.feed(doc)
    assert {"AUROC and AUPRC", "fixed thresholds (positive when score >= threshold)",
            "subgroups (breast level, malignant)", "matching",
            "Brier score and expected calibration error", "operating points",
            "subgroups against the other exams (flagged rows shaded)"} <= set(parsed.captions)
    assert [t for t, _ in parsed.tags].count("table") == 7
    ev = inputs.evaluation
    assert ev is not None
    auc = ev.report.exam_level["malignant"].auroc
    assert f"{auc.estimate:.3f} [{auc.ci_low:.3f}, {auc.ci_high:.3f}]" in doc
    [op] = [o for o in inputs.operating_points if o.level == "exam"]
    assert f"{op.sensitivity.estimate:.3f} [{op.sensitivity.ci_low:.3f}, " in doc
    cal = inputs.calibration
    assert cal is not None
    # the half-and-half logistic calibration lowers the Brier score on the held-out half
    assert cal.brier_change.estimate < 0
    assert f"{cal.after.brier.estimate:.4f}" in doc
    assert "radiologists: a case counts as recalled" in doc


def test_sections_follow_the_inputs(inputs: ReportInputs) -> None:
    only_shift = report_html(ReportInputs(shift=inputs.shift))
    assert "<h2>Shift report</h2>" in only_shift and "<h2>Evaluation</h2>" not in only_shift
    assert only_shift.count("<img ") == 1


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless render needs Debian's `chromium` "
                                                 "(apt-get install chromium); not in CI")
def test_report_renders_in_headless_chromium(page: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = page
    shot = tmp_path / "shot.png"
    subprocess.run([str(_chromium()), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1280,2400", f"--screenshot={shot}", path.as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert image.shape == (2400, 1280)
    # not blank: text and figures give dark pixels over much of the page, not one colour
    assert image.std() > 20
    dark_rows = (image < 128).any(axis=1)
    assert dark_rows.mean() > 0.3
