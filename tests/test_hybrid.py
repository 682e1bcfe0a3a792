"""hybrid: reading score tables and predictions, matching, blending, and the reader-study numbers.

The reader-study values are pinned as literals. They were computed with an independent
Mann-Whitney pair count (tests/tools/mann_whitney_reference.py: numpy and scipy, nothing from
this package or scikit-learn); `test_pins_are_what_the_independent_count_gives` reruns it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from mammocli.analysis.hybrid import (
    blend,
    hybrid_metrics,
    match,
    read_reader_scores,
    sweep,
    sweep_weights,
)
from mammocli.analysis.predictions import load_predictions
from mammocli.analysis.tables import Columns, read_labels
from mammocli.errors import ConfigError, InputError

READERS = [f"Reader{i:02d}_POM" for i in range(1, 15)]
# Per-reader AUROC on the 1,440 breasts (the independent Mann-Whitney count, 6 decimals)
READER_AUC = [0.725555, 0.782641, 0.809371, 0.859021, 0.704550, 0.735809, 0.771770,
              0.761451, 0.792003, 0.753373, 0.788490, 0.803600, 0.859794, 0.755715]
# Per-reader hybrid AUROC, w = 0.5, model AI_DMVCNN_POM (same independent count)
HYBRID_AUC = [0.829896, 0.829408, 0.871159, 0.902567, 0.829385, 0.823203, 0.869459,
              0.846681, 0.867569, 0.837516, 0.837920, 0.857060, 0.869827, 0.849808]


def study_columns(model: str = "AI_DMVCNN_POM") -> Columns:
    return Columns(exam="case_ID", readers=("Reader*_POM",), model=model, exam_explicit=True)


def study(path: Path, model: str = "AI_DMVCNN_POM"):  # type: ignore[no-untyped-def]
    cols = study_columns(model)
    return match(read_reader_scores(path, cols), load_predictions(path, cols))


MANN_WHITNEY = Path(__file__).resolve().parent / "tools" / "mann_whitney_reference.py"
MODEL_AUC, GMIC_AUC = 0.778754, 0.881174
MEAN_READER_AUC, MEAN_HYBRID_AUC, AVERAGED_READER_AUC = 0.7787959, 0.8515326, 0.8946


# --- acceptance: the reader study --------------------------------------------------------------


def test_reader_study_acceptance_numbers(reader_study_csv: Path) -> None:
    m = study(reader_study_csv)
    assert len(m.keys) == 1440 and m.readers == READERS and int(m.labels.sum()) == 61
    roc = hybrid_metrics(m, 0.5, n_bootstrap=0).auroc
    readers = [roc.readers[r].estimate for r in READERS]
    assert readers == pytest.approx(READER_AUC, abs=1e-6)
    assert [roc.hybrids[r].estimate for r in READERS] == pytest.approx(HYBRID_AUC, abs=1e-6)
    assert round(roc.mean_of_readers.estimate, 3) == 0.779  # 0.7788
    assert round(min(readers), 3) == 0.705 and round(max(readers), 3) == 0.860  # 0.7045-0.8598
    assert round(roc.model.estimate, 3) == 0.779  # 0.7788 (0.778754)
    assert roc.model.estimate == pytest.approx(MODEL_AUC, abs=1e-6)
    assert round(roc.mean_of_hybrids.estimate, 3) == 0.852  # 0.8515
    assert roc.mean_of_hybrids.estimate == pytest.approx(MEAN_HYBRID_AUC, abs=1e-7)
    assert round(roc.averaged_reader_score.estimate, 3) == 0.895  # 0.8946
    assert roc.averaged_reader_score.estimate == pytest.approx(AVERAGED_READER_AUC, abs=1e-4)
    assert roc.mean_hybrid_minus_mean_reader.estimate == pytest.approx(
        MEAN_HYBRID_AUC - MEAN_READER_AUC, abs=1e-6)


def test_pins_are_what_the_independent_count_gives(reader_study_csv: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The literals above are the script's output rounded, not numbers taken from mammocli.
    (Run in this process, as `python tests/tools/mann_whitney_reference.py CSV --json`.)"""
    spec = importlib.util.spec_from_file_location("mann_whitney_reference", MANN_WHITNEY)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert not any(name.startswith(("mammocli", "sklearn")) for name in vars(script))
    assert script.main([str(reader_study_csv), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["breasts"], out["positives"], out["readers"]) == (1440, 61, READERS)
    assert [round(x, 6) for x in out["reader_auroc"]] == READER_AUC
    assert [round(x, 6) for x in out["hybrid_auroc"]] == HYBRID_AUC
    assert (round(out["model_auroc"], 6), round(out["gmic_auroc"], 6)) == (MODEL_AUC, GMIC_AUC)
    assert round(out["mean_reader_auroc"], 7) == MEAN_READER_AUC
    assert round(out["mean_hybrid_auroc"], 7) == MEAN_HYBRID_AUC
    assert round(out["averaged_reader_score_auroc"], 4) == AVERAGED_READER_AUC


def test_reader_study_gmic_model(reader_study_csv: Path) -> None:
    roc = hybrid_metrics(study(reader_study_csv, "AI_GMIC_top5_POM"), n_bootstrap=0).auroc
    assert roc.model.estimate == pytest.approx(GMIC_AUC, abs=1e-6)


def test_reader_study_cis_reproducible_and_contain_estimates(reader_study_csv: Path) -> None:
    m = study(reader_study_csv)
    a = hybrid_metrics(m, n_bootstrap=100, seed=1)
    b = hybrid_metrics(m, n_bootstrap=100, seed=1)
    assert a == b
    for stat in (a.auroc, a.auprc):
        for e in [stat.model, stat.mean_of_readers, stat.mean_of_hybrids,
                  stat.averaged_reader_score, *stat.readers.values(), *stat.hybrids.values()]:
            assert e.ci_low is not None and e.ci_high is not None
            assert e.ci_low <= e.estimate <= e.ci_high
    assert a.auroc.mean_hybrid_minus_mean_reader.ci_low > 0  # the hybrid's gain is clear


def test_sweep_ends_are_model_and_readers(reader_study_csv: Path) -> None:
    m = study(reader_study_csv)
    points = sweep(m, [0.0, 0.5, 1.0])
    assert points[0].mean_hybrid_auroc == pytest.approx(MODEL_AUC, abs=1e-6)  # model only
    assert points[1].mean_hybrid_auroc == pytest.approx(MEAN_HYBRID_AUC, abs=1e-6)
    assert points[2].mean_hybrid_auroc == pytest.approx(np.mean(READER_AUC), abs=1e-6)


def test_sweep_weights() -> None:
    assert sweep_weights(0.25) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(sweep_weights(0.1)) == 11
    with pytest.raises(ConfigError):
        sweep_weights(0)


# --- blending ---------------------------------------------------------------------------------


def test_blend() -> None:
    r = np.array([[0.2, 1.0], [0.6, 0.0]])
    m = np.array([0.4, 0.8])
    np.testing.assert_allclose(blend(r, m, 0.5), [[0.3, 0.7], [0.7, 0.4]])
    np.testing.assert_allclose(blend(r, m, 0.25), [[0.35, 0.55], [0.75, 0.6]])
    with pytest.raises(ConfigError, match="outside 0-1"):
        blend(r, m, 1.5)


# --- reading ----------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


LONG = """exam_id,side,reader,score,label
e1,L,a,0.1,0
e1,R,a,0.9,1
e2,L,a,0.2,0
e2,R,a,0.3,0
e1,L,b,0.2,0
e1,R,b,0.7,1
e2,L,b,0.4,0
e2,R,b,0.1,0
"""


def test_long_layout(tmp_path: Path) -> None:
    s = read_reader_scores(write(tmp_path, "s.csv", LONG), Columns())
    assert s.readers == ["a", "b"]
    assert s.keys == [("e1", "L"), ("e1", "R"), ("e2", "L"), ("e2", "R")]
    np.testing.assert_allclose(s.scores[:, 1], [0.2, 0.7, 0.4, 0.1])
    assert s.labels == {("e1", "L"): 0, ("e1", "R"): 1, ("e2", "L"): 0, ("e2", "R"): 0}


def test_percent_scale_is_recognised_and_said(tmp_path: Path) -> None:
    text = LONG.replace("0.9,1", "90,1").replace(",a,0.1,", ",a,10,").replace(",a,0.2,", ",a,20,")
    text = text.replace(",a,0.3,", ",a,30,")
    s = read_reader_scores(write(tmp_path, "s.csv", text), Columns())
    np.testing.assert_allclose(s.scores[:, 0], [0.1, 0.9, 0.2, 0.3])
    assert any("0-100" in w and "a" in w for w in s.warnings)


def test_side_names(tmp_path: Path) -> None:
    text = LONG.replace(",L,", ",left,").replace(",R,", ",Right,")
    assert read_reader_scores(write(tmp_path, "s.csv", text), Columns()).keys[0] == ("e1", "L")


@pytest.mark.parametrize(("text", "error", "message"), [
    (LONG.replace("reader,", "who,"), ConfigError, "reader"),
    (LONG.replace("e2,R,b,0.1,0", "e2,R,b,1.7,0").replace("0.9,1", "0.9,1"), None, None),
    (LONG.replace("e2,R,b,0.1,0", "e2,R,b,-0.1,0"), InputError, "line 9.*outside"),
    (LONG.replace("e2,R,b,0.1,0", "e2,R,b,150,0"), InputError, "line 9.*outside 0-100"),
    (LONG.replace("e2,R,b,0.1,0", "e2,R,b,n/a,0"), InputError, "line 9.*not a number"),
    (LONG + "e2,R,b,0.2,0\n", InputError, "line 10: duplicate of line 9"),
    (LONG.replace("e2,R,a,0.3,0\n", "").replace("e2,R,b,0.1,0\n", ""), InputError,
     "'e2' has the L side only"),
    (LONG.replace("e2,R,b,0.1,0\n", ""), InputError, "reader 'b' has no score"),
    (LONG.replace("e2,R,b,0.1,0", "e2,R,b,0.1,2"), InputError, "line 9.*not 0 or 1"),
    (LONG.replace("e2,R,b,0.1,0", "e2,R,b,0.1,1"), InputError, "line 9.*contradicts line 5"),
    (LONG.replace("e2,R,b,0.1,0", "e2,X,b,0.1,0"), InputError, "line 9.*side 'X'"),
])
def test_bad_scores(tmp_path: Path, text: str, error: type[Exception] | None,
                    message: str | None) -> None:
    path = write(tmp_path, "s.csv", text)
    if error is None:  # 1.7 in a column that also has values <= 1: read as 0-100, said so
        scores = read_reader_scores(path, Columns())
        assert scores.warnings == ["s.csv: b read as 0-100 and divided by 100"]
        np.testing.assert_allclose(scores.scores[:, 1], [0.002, 0.007, 0.004, 0.017])
        return
    with pytest.raises(error, match=message):
        read_reader_scores(path, Columns())


def test_wide_layout_missing_reader_glob(reader_study_csv: Path) -> None:
    with pytest.raises(ConfigError, match="no column matches"):
        read_reader_scores(reader_study_csv, Columns(exam="case_ID", readers=("Doctor*",)))


# --- predictions ------------------------------------------------------------------------------


def result(exam: str, left: float, right: float) -> dict[str, object]:
    """A result as mammocli 0.1 wrote it (schema 1.0: no family field)."""
    probs = {"left": {"benign": 0.1, "malignant": left}, "right": {"benign": 0.2,
                                                                  "malignant": right}}
    return {"schema_version": "1.0", "status": "ok", "exam_id": exam, "model": "view-wise",
            "views": {}, "predictions": {"image_and_heatmaps": probs},
            "primary_variant": "image_and_heatmaps", "device": "cpu", "precision": "fp32",
            "seed": 0, "rng_mode": "exam", "tta": 1, "duration_s": 0.1,
            "weights": [], "mammocli_version": "0.1.0", "warnings": [], "skipped_files": []}


def test_predictions_json_jsonl_and_folder(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "e1.json").write_text(json.dumps(result("e1", 0.8, 0.1), indent=2))
    failed = {"status": "failed", "exam_id": "e3", "error": "missing view", "exit_code": 3}
    (folder / "batch.jsonl").write_text(
        json.dumps(result("e2", 0.2, 0.3)) + "\n" + json.dumps(failed) + "\n")
    p = load_predictions(folder, Columns())
    assert p.malignant == {("e1", "L"): 0.8, ("e1", "R"): 0.1, ("e2", "L"): 0.2,
                           ("e2", "R"): 0.3}
    assert p.benign is not None and p.benign[("e2", "R")] == 0.2
    assert len(p.failed) == 1 and "batch.jsonl, line 2" in p.failed[0]
    assert load_predictions(folder / "e1.json", Columns()).malignant[("e1", "L")] == 0.8


def test_predictions_bad_json(tmp_path: Path) -> None:
    bad = dict(result("e1", 0.8, 0.1))
    bad["predictions"] = {"image_and_heatmaps": {"left": {"benign": 0, "malignant": 2},
                                                 "right": {"benign": 0, "malignant": 0}}}
    path = write(tmp_path, "r.jsonl", json.dumps(result("e0", 0.1, 0.1)) + "\n" + json.dumps(bad))
    with pytest.raises(InputError, match="r.jsonl, line 2: not a mammocli result"):
        load_predictions(path, Columns())


def test_predictions_authors_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "exam_id,left_benign,right_benign,left_malignant,"
                 "right_malignant\ne1,0.1,0.2,0.3,0.4\n")
    p = load_predictions(path, Columns())
    assert p.malignant == {("e1", "L"): 0.3, ("e1", "R"): 0.4}
    assert p.benign == {("e1", "L"): 0.1, ("e1", "R"): 0.2}
    meta = write(tmp_path, "m.csv", "index,left_malignant,right_malignant\n7,0.5,0.6\n")
    assert load_predictions(meta, Columns()).malignant[("7", "R")] == 0.6


def test_predictions_long_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="side only"):
        load_predictions(write(tmp_path, "p.csv", "exam_id,side,score\ne1,L,0.5\n"), Columns())
    with pytest.raises(InputError, match="line 3.*outside 0-1"):
        load_predictions(write(tmp_path, "p.csv", "exam_id,side,score\ne1,L,0.5\ne1,R,55\n"),
                         Columns())
    with pytest.raises(ConfigError, match="--model-column"):
        load_predictions(write(tmp_path, "p.csv", "exam_id,side,x\ne1,L,0.5\n"), Columns())


# --- matching and labels ----------------------------------------------------------------------


def test_unmatched_exams_are_reported(tmp_path: Path) -> None:
    scores = read_reader_scores(write(tmp_path, "s.csv", LONG), Columns())
    preds = load_predictions(write(tmp_path, "p.csv", "exam_id,side,score\ne1,L,0.1\ne1,R,0.8\n"
                                   "e9,L,0.1\ne9,R,0.1\n"), Columns())
    m = match(scores, preds)
    assert m.exams == ["e1", "e1"] and m.scores_only == ["e2"] and m.predictions_only == ["e9"]
    with pytest.raises(InputError, match="no exam id"):
        match(scores, load_predictions(write(tmp_path, "q.csv",
                                             "exam_id,side,score\nx,L,0.1\nx,R,0.1\n"), Columns()))


def test_labels_file_overrides_and_must_cover(tmp_path: Path) -> None:
    scores = read_reader_scores(write(tmp_path, "s.csv", LONG), Columns())
    preds = load_predictions(write(tmp_path, "p.csv", "exam_id,side,score\ne1,L,0.1\ne1,R,0.8\n"
                                   "e2,L,0.1\ne2,R,0.1\n"), Columns())
    labels = read_labels(write(tmp_path, "l.csv", "exam_id,left_malignant,right_malignant\n"
                               "e1,1,0\ne2,0,0\n"), Columns())
    assert match(scores, preds, labels).labels.tolist() == [1, 0, 0, 0]
    partial = read_labels(write(tmp_path, "k.csv", "exam_id,side,label\ne1,L,1\ne1,R,0\n"),
                          Columns())
    with pytest.raises(InputError, match="no label for exam 'e2'"):
        match(scores, preds, partial)
    with pytest.raises(InputError, match="line 2.*not 0 or 1"):
        read_labels(write(tmp_path, "b.csv", "exam_id,side,label\ne1,L,yes\ne1,R,0\n"),
                    Columns())
