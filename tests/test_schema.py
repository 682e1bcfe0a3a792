"""The result schema 2.0: typed fields, the committed JSON Schema, one version, 1.0 files still
read by hybrid/evaluate."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import mammocli
from mammocli.analysis.predictions import load_predictions
from mammocli.analysis.tables import Columns
from mammocli.errors import InputError
from mammocli.outputs import schema
from mammocli.outputs.schema import ExamFailure, PredictionResult
from mammocli.vocabulary import SCHEMA_VERSION, Family, ModelKind, Variant

PACKAGE = Path(mammocli.__file__).parent


def record(**changes: object) -> dict[str, object]:
    """A complete 2.0 result as `predict` writes it (one image per view)."""
    image = {"source": "L_CC.png", "crop_window": [0, 10, 0, 8], "flipped": False,
             "orientation_from": "auto", "best_center": [5, 4],
             "distance_from_starting_side": 0, "predictions": None, "outputs": None,
             "uids": None, "header": {"Manufacturer": "ACME", "KVP": 28.0},
             "image": {"rows": 10, "columns": 8, "tissue_mean": 0.25}}
    probs = {"left": {"benign": 0.1, "malignant": 0.3}, "right": {"benign": 0.2,
                                                                  "malignant": 0.4}}
    doc: dict[str, object] = {
        "schema_version": "2.0", "status": "ok", "exam_id": "e1", "family": "dmv-cnn",
        "model": "view-wise", "views": {v: [dict(image, source=f"{v}.png")]
                                        for v in ("L-CC", "R-CC", "L-MLO", "R-MLO")},
        "predictions": {"image_only": probs}, "primary_variant": "image_only",
        "outputs": None, "device": "cpu", "precision": "fp32", "seed": 0, "rng_mode": "exam",
        "tta": 2, "duration_s": 0.5, "weights": [{"name": "sample_image_model.p",
                                                  "sha256": "ab" * 32, "path": None}],
        "mammocli_version": "0.1.0", "warnings": [], "skipped_files": [], "input": None,
        "header": {"Manufacturer": "ACME", "KVP": 28.0, "TissueMean": 0.25},
        "site": {"site_created": "2025-01-02T03:04:05+00:00", "method": "logistic",
                 "calibrated_malignant": {"left": 0.2, "right": 0.3, "exam": 0.3},
                 "flags": [{"operating_point": "specificity 0.9", "level": "exam",
                            "threshold": 0.35, "left": False, "right": True, "exam": True}]}}
    doc.update(changes)
    return doc


def schema_1_0(doc: dict[str, object]) -> dict[str, object]:
    """The same record as mammocli 0.1 wrote it: schema 1.0, no family, no outputs."""
    old = {k: v for k, v in doc.items() if k not in ("family", "outputs", "header", "site")}
    old["schema_version"] = "1.0"
    old["views"] = {view: [{k: v for k, v in image.items()
                            if k not in ("outputs", "header", "image")}
                           for image in images]
                    for view, images in doc["views"].items()}  # type: ignore[attr-defined]
    return old


def test_a_complete_record_validates_and_round_trips() -> None:
    result = PredictionResult.model_validate(record())
    assert result.family is Family.DMV_CNN and result.model is ModelKind.VIEW_WISE
    assert result.primary_variant is Variant.IMAGE_ONLY
    assert json.loads(schema.to_json(result)) == record()


@pytest.mark.parametrize("field,value", [
    ("rng_mode", "per-exam"),  # validated as a plain str in schema 1.0 of mammocli 0.1
    ("precision", "fp16"),
    ("model", "viewwise"),
    ("family", "gmic-x"),
    ("primary_variant", "image"),
    ("tta", -1),
    ("schema_version", "3.0"),
    ("skipped_files", [{"file": "a.dcm"}]),
])
def test_result_fields_are_typed(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        PredictionResult.model_validate(record(**{field: value}))
    assert caught.value.errors()[0]["loc"][0] == field


def test_per_image_fields_are_typed() -> None:
    doc = record()
    doc["views"]["L-CC"][0]["orientation_from"] = "sideways"  # type: ignore[index]
    with pytest.raises(ValidationError, match="orientation_from"):
        PredictionResult.model_validate(doc)
    doc = record()
    doc["views"]["L-CC"][0]["predictions"] = {"image-only": {"benign": 0, "malignant": 0}}  # type: ignore[index]
    with pytest.raises(ValidationError, match="predictions"):
        PredictionResult.model_validate(doc)


def test_schema_1_0_records_are_read_as_2_0() -> None:
    old = schema_1_0(record())
    result = PredictionResult.model_validate(old)
    assert result.schema_version == SCHEMA_VERSION == "2.0"
    assert result.family is Family.DMV_CNN
    assert result.primary.right.malignant == 0.4
    failure = ExamFailure.model_validate({"schema_version": "1.0", "status": "failed",
                                          "exam_id": "e2", "error": "x", "exit_code": 3})
    assert failure.schema_version == "2.0"


def test_hybrid_and_evaluate_read_1_0_and_2_0_result_files(tmp_path: Path) -> None:
    """`load_predictions` is what `hybrid` and `evaluate` read results with."""
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(schema_1_0(record(exam_id="e1"))) + "\n")
    new = tmp_path / "new.json"
    new.write_text(json.dumps(record(exam_id="e2"), indent=2))
    for path, exam in ((old, "e1"), (new, "e2")):
        scores = load_predictions(path, Columns())
        assert scores.malignant == {(exam, "L"): 0.3, (exam, "R"): 0.4}
        assert scores.benign == {(exam, "L"): 0.1, (exam, "R"): 0.2}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(schema_1_0(record(rng_mode="per-exam"))) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl, line 1: not a mammocli result \(rng_mode"):
        load_predictions(bad, Columns())


def test_the_committed_json_schema_is_the_models() -> None:
    committed = json.loads(schema.SCHEMA_FILE.read_text("utf-8"))
    assert committed == schema.json_schema(), (
        "the result models changed: regenerate with `python -m mammocli.outputs.schema` "
        "and commit mammocli/outputs/result.schema.json")
    assert schema.SCHEMA_FILE.parent == PACKAGE / "outputs"  # shipped as package data
    ok = committed["$defs"]["PredictionResult"]
    assert ok["properties"]["rng_mode"] == {"$ref": "#/$defs/RngMode"}
    assert committed["$defs"]["RngMode"]["enum"] == ["exam", "run"]
    assert ok["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert {"family", "model", "predictions", "primary_variant"} <= set(ok["required"])


def test_the_schema_command_writes_the_file(tmp_path: Path) -> None:
    target = tmp_path / "result.schema.json"
    child = subprocess.run([sys.executable, "-m", "mammocli.outputs.schema", str(target)],
                           capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == 0, child.stderr
    assert target.read_text("utf-8") == schema.schema_text()


def _assignments(name: str) -> list[str]:
    """Modules of the package that assign `name` at module level."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found.append(path.relative_to(PACKAGE).as_posix())
    return found


def test_one_schema_version_and_one_definition_of_each_name() -> None:
    assert _assignments("SCHEMA_VERSION") == ["vocabulary.py"]
    assert schema.SchemaVersion.__args__ == (SCHEMA_VERSION,)  # type: ignore[attr-defined]
    classes: dict[str, list[str]] = {}
    strings: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        where = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append(where)
            elif isinstance(node, ast.Constant) and node.value in (
                    "image_only", "image_and_heatmaps", "view-wise", "image-wise",
                    "sample_patch_model.p", "sample_image_model.p",
                    "ImageOnly__ModeImage_weights.p"):
                strings.setdefault(node.value, []).append(where)
    for name in ("ModelKind", "Variant", "FlipMode", "RngMode", "Precision", "Family"):
        assert classes[name] == ["vocabulary.py"], name
    assert {w for ws in strings.values() for w in ws} == {"vocabulary.py"}, strings
