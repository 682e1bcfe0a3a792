"""README "At a new site": its five commands run in order, as written, on tiny synthetic DICOM
exams of two manufacturers, and each output means what README says (issue 17).

README's commands run the model at its defaults (the paper's sizes, both variants, the default
test-time augmentation, weights from the cache), and README says so; this test adds the small
pipeline, image-only, one augmentation and random weights to the two `predict` lines only, the
flags every quick predict test uses, so that the chain runs in seconds on synthetic exams."""

from __future__ import annotations

import json
import re
import shlex
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_exam
from PIL import Image
from typer.testing import CliRunner

from mammocli.analysis.site import load_site
from mammocli.cli.app import app
from mammocli.outputs.schema import PredictionResult

REPO = Path(__file__).resolve().parents[1]
SCANNERS = [("ACME", "Mammo 1", "28"), ("Other", "Vision 2", "31")]


def site_commands() -> list[list[str]]:
    """The command block of README's "At a new site", continuation lines joined."""
    text = (REPO / "README.md").read_text("utf-8")
    match = re.search(r"^## At a new site\n.*?```[a-z]*\n(.*?)```", text, re.S | re.M)
    assert match, 'README: no command block under "## At a new site"'
    joined = match.group(1).replace("\\\n", " ")
    lines = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [words for words in lines if words]


def _exams(root: Path, n: int, seed: int) -> None:
    """n four-view DICOM exams, alternating between the two scanners."""
    for i in range(n):
        manufacturer, model, kvp = SCANNERS[i % 2]
        for path in write_exam(root / f"{root.name}{i:02d}", seed=seed + 10 * i).values():
            ds = pydicom.dcmread(path)
            ds.Manufacturer, ds.ManufacturerModelName, ds.KVP = manufacturer, model, kvp
            ds.save_as(path)


def _labels(path: Path, root: Path, positive: set[int]) -> None:
    rows = ["exam_id,side,label"]
    for i, exam in enumerate(sorted(p.name for p in root.iterdir())):
        rows += [f"{exam},L,{int(i in positive)}", f"{exam},R,0"]
    path.write_text("\n".join(rows) + "\n")


class _Report(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.captions: list[str] = []
        self.images = 0
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        self.images += tag == "img"

    def handle_data(self, data: str) -> None:
        if self._tag == "h2":
            self.h2.append(data)
        elif self._tag == "caption":
            self.captions.append(data)
        self._tag = ""


def test_the_site_workflow_runs_as_written(tmp_path: Path, random_weights: Path,
                                           small_pipeline: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    commands = site_commands()
    assert [w[:2] for w in commands] == [["mammocli", "predict"], ["mammocli", "evaluate"],
                                         ["mammocli", "calibrate"], ["mammocli", "predict"],
                                         ["mammocli", "evaluate"]]
    monkeypatch.chdir(tmp_path)
    _exams(tmp_path / "labelled_exams", 8, seed=0)
    _exams(tmp_path / "new_exams", 6, seed=500)
    _labels(tmp_path / "labels.csv", tmp_path / "labelled_exams", {0, 3, 5})
    _labels(tmp_path / "new_labels.csv", tmp_path / "new_exams", {1, 4})
    tiny = ["--weights-dir", str(random_weights), "--pipeline-config", str(small_pipeline),
            "--variants", "image-only", "--tta", "1", "-q"]
    runner = CliRunner()
    out = []
    for words in commands:
        args = words[1:] + (tiny if words[1] == "predict" else [])
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (words, result.stderr)
        out.append(result)

    # 1. one result per labelled exam, raw probabilities, the scanner fields collected
    results = [PredictionResult.model_validate_json(line)
               for line in Path("results.jsonl").read_text().splitlines()]
    assert len(results) == 8 and all(r.site is None for r in results)
    assert {r.header["Manufacturer"] for r in results if r.header} == {"ACME", "Other"}
    # 2. AUCs here, with CIs, on the 8 labelled exams
    ev = json.loads(out[1].stdout)
    auc = ev["exam_level"]["malignant"]["auroc"]
    assert ev["exam_level"]["malignant"]["n"] == 8 and auc["ci_low"] <= auc["estimate"] \
        <= auc["ci_high"]
    # 3. site.json of these weights, with the two operating points at both levels, the plot
    site = load_site(Path("site.json"))
    assert site.model is not None and site.data.n_exams == 8
    assert site.model.fingerprint() == {w.name: w.sha256 for w in results[0].weights}
    assert [op.name for op in site.operating_points] == [
        "exam specificity 0.9", "breast specificity 0.9", "exam recall_rate 0.1",
        "breast recall_rate 0.1"]
    with Image.open("plots/reliability.png") as im:
        assert im.format == "PNG"
    # 4. calibrated probabilities and flags, the raw ones kept: the fit applied by hand
    new = [PredictionResult.model_validate_json(line)
           for line in Path("new.jsonl").read_text().splitlines()]
    assert len(new) == 6
    for r in new:
        assert r.site is not None
        raw = np.array([r.primary.left.malignant, r.primary.right.malignant])
        cal = site.calibrate(raw)
        assert (r.site.calibrated_malignant.left, r.site.calibrated_malignant.right) == \
            pytest.approx(tuple(cal))
        for flag, op in zip(r.site.flags, site.operating_points, strict=True):
            t = op.threshold.estimate
            assert (flag.operating_point, flag.threshold) == (op.name, t)
            assert (flag.left, flag.right) == (bool(raw[0] >= t), bool(raw[1] >= t))
    # 5. the shift report by scanner, the site's points on the new labels, the report
    doc = json.loads(out[4].stdout)
    assert doc["model_source"] == "results (calibrated by the site file)"
    groups = {(g["column"], g["value"]): g["n"] for g in doc["shift"]["subgroups"]}
    assert groups[("Manufacturer", "ACME")] == 3 and groups[("Manufacturer", "Other")] == 3
    assert ("ManufacturerModelName", "Vision 2") in groups
    points = doc["operating_points"]
    assert points["source"] == "the results' flags (predict --site)"
    assert [p["name"] for p in points["points"]] == [op.name for op in site.operating_points]
    assert all(p["n"] == (6 if p["level"] == "exam" else 12) for p in points["points"])
    parser = _Report()
    parser.feed(Path("report.html").read_text())
    assert parser.h2 == ["Evaluation", "Calibration", "Operating points", "Shift report"]
    assert "subgroups against the other exams (flagged rows shaded)" in parser.captions
    assert parser.images == 4  # ROC, PR, reliability, forest plot
