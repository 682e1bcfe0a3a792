"""`predict` on roots of PNG exams with broken files and bad exam folders: each bad exam fails
alone (exit 3, a failure record naming the file), the others are scored, and a folder of the
root that holds no exam is named on stderr. Image-only at the small sizes."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.outputs.schema import ExamFailure, PredictionResult
from mammocli.synthetic.phantoms import write_exam

runner = CliRunner()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _half_image(path: Path) -> None:
    """Rewrite a 16-bit PNG so that its zlib stream ends (cleanly) after half the rows."""
    pixels = np.asarray(Image.open(path)).astype(">u2")
    rows, cols = pixels.shape
    lines = b"".join(b"\x00" + row.tobytes() for row in pixels[: rows // 2])
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + _chunk(b"IHDR", struct.pack(">IIBBBBB", cols, rows, 16, 0, 0, 0, 0))
                     + _chunk(b"IDAT", zlib.compress(lines)) + _chunk(b"IEND", b""))


def _args(random_weights: Path, small_pipeline: Path, *extra: str) -> list[str]:
    return ["--weights-dir", str(random_weights), "--pipeline-config", str(small_pipeline),
            "--tta", "0", "--variants", "image-only", *extra]


def test_bad_exams_of_a_root_fail_alone(tmp_path: Path, random_weights: Path,
                                        small_pipeline: Path) -> None:
    root = tmp_path / "root"
    write_exam(root / "a_good", shape=(400, 300), seed=1)
    write_exam(root / "b_bad_yaml", shape=(400, 300), seed=2)
    (root / "b_bad_yaml" / "exam.yaml").write_text(
        "views:\n  L-CC: L_CC.png\n  R-CC: R_CC.png\n  L-MLO: L_MLO.png\n  R-MLO: R_MLO.png\n"
        "horizontal_flip: [a, b]\n")
    write_exam(root / "c_good", shape=(400, 300), seed=3)
    write_exam(root / "d_half_rows", shape=(400, 300), seed=4)
    _half_image(root / "d_half_rows" / "L_CC.png")
    write_exam(root / "e_jpeg", shape=(400, 300), seed=5)
    (root / "e_jpeg" / "R_MLO.png").unlink()
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(root / "e_jpeg" / "R_MLO.jpg")
    (root / "f_notes").mkdir()
    (root / "f_notes" / "readme.txt").write_text("not an exam")

    result = runner.invoke(app, ["predict", str(root),
                                 *_args(random_weights, small_pipeline)])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.stderr
    by_id = {r["exam_id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(by_id) == {"a_good", "b_bad_yaml", "c_good", "d_half_rows", "e_jpeg"}
    for good in ("a_good", "c_good"):
        PredictionResult.model_validate(by_id[good])
    expected = {
        "b_bad_yaml": "exam.yaml: invalid:\n  line 6, horizontal_flip: expected NO, YES or auto",
        "d_half_rows": "L_CC.png: cannot read the image: the image data ends early: about 200 "
                       "of the 400 rows",
        "e_jpeg": "R_MLO.jpg: JPEG is not supported",
    }
    for exam_id, message in expected.items():
        failure = ExamFailure.model_validate(by_id[exam_id])
        assert message in failure.error and failure.exit_code == 3, exam_id
    assert "f_notes: left out: no exam" in " ".join(result.stderr.split())
    assert str(tmp_path) not in result.stderr


def test_max_pixels_refuses_large_images_before_decoding(tmp_path: Path, random_weights: Path,
                                                         small_pipeline: Path) -> None:
    exam = write_exam(tmp_path / "exam", shape=(400, 300), seed=1)
    args = _args(random_weights, small_pipeline)
    refused = runner.invoke(app, ["predict", str(exam), *args, "--max-pixels", "100000"])
    assert refused.exit_code == 3
    failure = ExamFailure.model_validate_json(refused.stdout)
    assert failure.error == ("L_CC.png: cannot read the image: IHDR declares 300 x 400 "
                             "pixels, above the limit of 100,000")
    assert "--max-pixels" in (failure.hint or "")
    admitted = runner.invoke(app, ["predict", str(exam), *args, "--max-pixels", "120000"])
    assert admitted.exit_code == 0
    PredictionResult.model_validate_json(admitted.stdout)
