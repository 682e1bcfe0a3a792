"""A DICOM exam and the equivalent 16-bit PNG exam give identical predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import make_mg, save_mg
from pydicom.uid import JPEG2000Lossless, generate_uid
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.synthetic.phantoms import phantom, write_png16
from mammocli.views import VIEWS, Side

runner = CliRunner()


@pytest.mark.parametrize("monochrome1,syntax", [(False, None), (True, JPEG2000Lossless)])
def test_dicom_and_png_exams_predict_the_same(tmp_path: Path, random_weights: Path,
                                              small_pipeline: Path, monochrome1: bool,
                                              syntax: str | None) -> None:
    rng = np.random.default_rng(4)
    study = generate_uid()
    for i, view in enumerate(VIEWS):
        facing = Side.RIGHT if view.side is Side.LEFT else Side.LEFT
        png16 = phantom((400, 300), rng, facing=facing)
        values12 = np.round(png16.astype(np.float64) * 4095 / 65535).astype(np.uint16)
        write_png16(tmp_path / "png" / f"{view.side.letter}_{view.angle.value}.png", png16)
        ds, _ = make_mg(view.side.letter, view.angle.value, pixels=values12, bits=12,
                        monochrome1=monochrome1, study_uid=study, instance_number=i + 1)
        save_mg(ds, tmp_path / "dicom" / f"IM{i:04d}", **({"syntax": syntax} if syntax else {}))
    args = ["--weights-dir", str(random_weights), "--pipeline-config", str(small_pipeline),
            "--tta", "2"]
    from_png = runner.invoke(app, ["predict", str(tmp_path / "png"), *args])
    from_dicom = runner.invoke(app, ["predict", str(tmp_path / "dicom"), *args])
    assert from_png.exit_code == 0, from_png.stderr
    assert from_dicom.exit_code == 0, from_dicom.stderr
    png, dicom = json.loads(from_png.stdout), json.loads(from_dicom.stdout)
    assert dicom["predictions"] == png["predictions"]
    for view in VIEWS:
        assert dicom["views"][view.value][0]["crop_window"] == png["views"][view.value][0][
            "crop_window"]
        assert dicom["views"][view.value][0]["flipped"] == png["views"][view.value][0]["flipped"]
    assert "SYN" not in from_dicom.stdout + from_dicom.stderr  # no patient name or ID
