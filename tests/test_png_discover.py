"""PNG exam folders: view names, exam.yaml, roots of many exams, pixel reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammocli.config import FlipMode
from mammocli.errors import ConfigError, InputError
from mammocli.io.discover import discover_exams, view_from_name
from mammocli.io.exam import ImageSource
from mammocli.io.png import read_png
from mammocli.preprocess.prepare import check_usable
from mammocli.synthetic.phantoms import write_exam, write_png16
from mammocli.views import View


@pytest.mark.parametrize("name,view", [
    ("0_L_CC.png", View.L_CC), ("L-CC.png", View.L_CC), ("L_CC.png", View.L_CC),
    ("LCC.png", View.L_CC), ("l_mlo.png", View.L_MLO), ("R-MLO.PNG", View.R_MLO),
    ("rcc.png", View.R_CC), ("e1_L_CC_a.png", View.L_CC), ("exam7 R MLO.png", View.R_MLO),
])
def test_view_from_file_name(name: str, view: View) -> None:
    assert view_from_name(name) is view


@pytest.mark.parametrize("name", ["scan.png", "L_ML.png", "LCC_RCC.png", "calcc.png",
                                  "R_MLOX.png"])
def test_file_names_without_a_single_view(name: str) -> None:
    assert view_from_name(name) is None


def test_exam_folder_and_root_of_exams(tmp_path: Path) -> None:
    write_exam(tmp_path / "b_exam", shape=(120, 90), seed=1)
    write_exam(tmp_path / "a_exam", shape=(120, 90), seed=2)
    (tmp_path / "a_exam" / "notes.txt").write_text("hello")
    (tmp_path / "not_an_exam").mkdir()
    exams = discover_exams(tmp_path)
    assert [e.exam_id for e in exams] == ["a_exam", "b_exam"]  # sorted
    a = exams[0]
    assert not a.missing_views
    assert a.images[View.R_MLO][0].relative == "R_MLO.png"
    assert [s.relative for s in a.skipped] == ["notes.txt"]
    single = discover_exams(tmp_path / "b_exam")
    assert [e.exam_id for e in single] == ["b_exam"]


def test_exam_yaml_lists_files_and_flip(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    write_exam(exam / "img", shape=(120, 90))
    (exam / "img" / "L_CC.png").rename(exam / "img" / "first.png")
    (exam / "exam.yaml").write_text(
        "horizontal_flip: NO\n"
        "views:\n"
        "  L-CC: [img/first.png, img/R_CC.png]\n"
        "  R-CC: img/R_CC.png\n"
        "  L_MLO: [img/L_MLO.png]\n"
        "  r-mlo: [img/R_MLO.png]\n"
    )
    (found,) = discover_exams(exam)
    assert found.horizontal_flip is FlipMode.NO
    assert [s.relative for s in found.images[View.L_CC]] == ["img/first.png", "img/R_CC.png"]
    assert not found.missing_views


@pytest.mark.parametrize("text,message", [
    ("views: [a.png]\n", "line 1, views: Input should be a valid dictionary"),
    ("views: {X-CC: a.png}\n", "line 1, views.X-CC: unknown view"),
    ("horizontal_flip: maybe\nviews: {}\n", "line 1, horizontal_flip: expected NO, YES or auto"),
    ("colour: red\n", "line 1, colour: unknown key"),
    ("views: {L-CC: ../../etc/passwd}\n", "L-CC: ../../etc/passwd: points outside the exam"),
    ("views: [unclosed\n", "not valid YAML"),
])
def test_bad_exam_yaml(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "exam.yaml").write_text(text)
    (exam,) = discover_exams(tmp_path)  # recorded on the exam, not raised: it fails alone
    assert exam.problem is not None and message in exam.problem.message
    with pytest.raises(InputError, match="exam.yaml") as info:
        check_usable(exam)
    assert message in info.value.message and info.value.exit_code == 3


def test_missing_path_and_empty_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        discover_exams(tmp_path / "nope")
    with pytest.raises(InputError, match="no exam found"):
        discover_exams(tmp_path)


def _source(path: Path) -> ImageSource:
    return ImageSource(path=path, relative=path.name, view=View.L_CC)


def test_sixteen_bit_round_trip_up_to_65535(tmp_path: Path) -> None:
    pixels = np.array([[0, 1, 4095, 65535], [257, 32768, 12, 65534]], dtype=np.uint16)
    write_png16(tmp_path / "x.png", pixels)
    image = read_png(_source(tmp_path / "x.png"))
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.warnings == ()


def test_eight_bit_is_scaled_with_a_warning(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 1, 255]], dtype=np.uint8)).save(tmp_path / "x.png")
    image = read_png(_source(tmp_path / "x.png"))
    np.testing.assert_array_equal(image.pixels, [[0, 257, 65535]])
    assert "8-bit" in image.warnings[0]


def test_colour_truncated_and_non_images_are_clear_errors(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "colour.png")
    with pytest.raises(InputError, match="colour.png: RGB image"):
        read_png(_source(tmp_path / "colour.png"))
    write_png16(tmp_path / "full.png", np.full((64, 64), 1000, dtype=np.uint16))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png: cannot read"):
        read_png(_source(tmp_path / "cut.png"))
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="text.png: cannot read") as info:
        read_png(_source(tmp_path / "text.png"))
    assert str(tmp_path) not in str(info.value)  # no absolute paths in messages
