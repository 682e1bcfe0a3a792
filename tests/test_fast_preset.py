"""`predict --fast`: image-only without TTA (GMIC: one member), and no guessing when an option
it sets is given too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.cli.presets import DEFAULT_TTA, apply_fast
from mammocli.errors import ConfigError
from mammocli.synthetic.phantoms import write_exam
from mammocli.vocabulary import ModelKind

runner = CliRunner()


def test_fast_sets_image_only_and_no_tta_and_one_gmic_member() -> None:
    dmv = apply_fast(True, ModelKind.VIEW_WISE, None, None, None)
    assert (dmv.variants, dmv.gmic_models, dmv.tta) == ("image-only", None, 0)
    gmic = apply_fast(True, ModelKind.GMIC, None, None, None)
    assert (gmic.variants, gmic.gmic_models, gmic.tta) == (None, "1", 0)
    plain = apply_fast(False, ModelKind.VIEW_WISE, None, None, None)
    assert (plain.variants, plain.tta) == (None, DEFAULT_TTA)
    assert apply_fast(False, ModelKind.VIEW_WISE, None, None, 3).tta == 3


@pytest.mark.parametrize("extra", [["--tta", "2"], ["--variants", "image-only"],
                                   ["--tta", "10"]])
def test_fast_with_an_option_it_sets_is_a_usage_error(tmp_path: Path, extra: list[str]) -> None:
    with pytest.raises(ConfigError, match="--fast sets"):
        apply_fast(True, ModelKind.VIEW_WISE, *(("image-only", None, None)
                                                if "--variants" in extra
                                                else (None, None, int(extra[1]))))
    exam = write_exam(tmp_path / "e", shape=(120, 90))
    result = runner.invoke(app, ["predict", str(exam), "--fast", *extra])
    assert result.exit_code == 2 and "--fast" in result.stderr and extra[0] in result.stderr


def test_fast_result_records_image_only_and_tta_zero(tmp_path: Path, random_weights: Path,
                                                     small_pipeline: Path) -> None:
    exam = write_exam(tmp_path / "e", shape=(200, 150), seed=1)
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["predict", str(exam), "--fast", "--weights-dir",
                                 str(random_weights), "--pipeline-config", str(small_pipeline),
                                 "--device", "cpu", "-q", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["tta"] == 0
    assert [k for k, v in record["predictions"].items() if v] == ["image_only"]
    assert record["primary_variant"] == "image_only"
