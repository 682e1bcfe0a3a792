"""`predict --weights ROLE=NAME_OR_FILE`: registered or given files replace official ones, and
the result records the file used and its SHA-256."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.errors import ConfigError, WeightsError
from mammocli.synthetic.phantoms import write_exam, write_random_weights
from mammocli.weights import sha256_file
from mammocli.weights.overrides import parse_weight_overrides, weights_locator

runner = CliRunner()
IMAGE = "sample_image_model.p"


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_weights(tmp_path_factory.mktemp("other"), seed=1)


def test_roles_are_aliases_or_official_names() -> None:
    assert parse_weight_overrides("patch=mine, view-image = ./x.p") == {
        "sample_patch_model.p": "mine", IMAGE: "./x.p"}
    assert parse_weight_overrides("ImageOnly__ModeImage_weights.p=a") == {
        "ImageOnly__ModeImage_weights.p": "a"}
    assert parse_weight_overrides(None) == {} == parse_weight_overrides(" ")
    for bad, match in (("gpu=x", "unknown role 'gpu'"), ("patch", "ROLE=NAME_OR_FILE"),
                       ("patch=", "ROLE=NAME_OR_FILE"), ("patch=a,patch=b", "twice")):
        with pytest.raises(ConfigError, match=match) as error:
            parse_weight_overrides(bad)
        assert error.value.exit_code == 2


def test_locator_takes_registered_names_files_and_falls_back(tmp_path: Path,
                                                             random_weights: Path,
                                                             other_weights: Path) -> None:
    assert runner.invoke(app, ["weights", "register", "mine", str(other_weights / IMAGE)]
                         ).exit_code == 0
    locate = weights_locator(random_weights, parse_weight_overrides(
        f"view-image=mine,patch={other_weights / 'sample_patch_model.p'}"), progress=False)
    assert locate(IMAGE) == (other_weights / IMAGE).resolve()
    assert locate("sample_patch_model.p") == other_weights / "sample_patch_model.p"
    assert locate("sample_imageheatmaps_model.p") == random_weights / "sample_imageheatmaps_model.p"
    with pytest.raises(WeightsError, match="view-image=nothing-here") as error:
        weights_locator(random_weights, {IMAGE: "nothing-here"})(IMAGE)
    assert "weights register" in (error.value.hint or "")


def _predict(exam: Path, *args: str | Path) -> tuple[int, dict, str]:
    result = runner.invoke(app, ["predict", str(exam), "--tta", "1", "--variants", "image-only",
                                 *map(str, args)])
    return result.exit_code, json.loads(result.stdout) if result.exit_code == 0 else {}, \
        result.stderr


def test_predict_uses_a_registered_file_and_records_it(tmp_path: Path, random_weights: Path,
                                                       other_weights: Path,
                                                       small_pipeline: Path) -> None:
    exam = write_exam(tmp_path / "e1", shape=(200, 150), seed=1)
    mine = tmp_path / "trained" / "my_image_model.p"
    mine.parent.mkdir()
    mine.write_bytes((other_weights / IMAGE).read_bytes())
    assert runner.invoke(app, ["weights", "register", "my-image", str(mine)]).exit_code == 0
    common = ("--pipeline-config", small_pipeline)

    code, official, err = _predict(exam, "--weights-dir", random_weights, *common)
    assert code == 0, err
    code, registered, err = _predict(exam, "--weights-dir", random_weights,
                                     "--weights", "view-image=my-image", *common)
    assert code == 0, err
    code, by_file, err = _predict(exam, "--weights-dir", random_weights,
                                  "--weights", f"view-image={mine}", *common)
    assert code == 0, err
    code, other_dir, err = _predict(exam, "--weights-dir", other_weights, *common)
    assert code == 0, err

    used = {w["name"]: w for w in registered["weights"]}
    assert used[IMAGE]["sha256"] == sha256_file(mine) != sha256_file(random_weights / IMAGE)
    assert Path(used[IMAGE]["path"]) == mine.resolve()
    assert {w["name"]: w["sha256"] for w in by_file["weights"]} == {
        IMAGE: sha256_file(mine)}
    # The numbers are those of the file used, not of the official one.
    assert registered["predictions"] == by_file["predictions"] == other_dir["predictions"]
    assert registered["predictions"] != official["predictions"]

    mine.write_bytes(b"changed")  # a registered file that changed is refused (exit 4)
    code, _, err = _predict(exam, "--weights-dir", random_weights,
                            "--weights", "view-image=my-image", *common)
    assert code == 4 and "changed since registration" in err
    code, _, err = _predict(exam, "--weights", "viewimage=my-image", *common)
    assert code == 2 and "unknown role 'viewimage'" in err
