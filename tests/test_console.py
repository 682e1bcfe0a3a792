"""User-supplied names reach the console verbatim: never parsed as rich markup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mammocli.cli.app import app
from mammocli.cli.common import report_error
from mammocli.console import cell, line
from mammocli.errors import InputError
from mammocli.synthetic.phantoms import write_exam

runner = CliRunner()


@pytest.mark.parametrize("name", ["x[bold]y", "[/]", "a[/b]c", "[red on white]z", "\\[x]"])
def test_markup_looking_text_stays_verbatim(name: str, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    report_error(InputError(f"{name}: missing view(s) R-MLO", hint=f"add {name}/R_MLO.png"))
    err = capsys.readouterr().err
    assert f"error: {name}: missing view(s) R-MLO" in err
    assert f"hint: add {name}/R_MLO.png" in err
    assert line(("ok", "green"), " ", name).plain == f"ok {name}"


def test_table_cells_show_names_verbatim() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("name")
    table.add_row(cell("L_CC[bold]x.png"))
    table.add_row(cell("[/]"))
    console = Console(width=60, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(table)
    text = console.export_text()
    assert "L_CC[bold]x.png" in text and "[/]" in text


# "a[/]b" is the folder "]b" inside "a[": too deep for an exam of the root, its files are
# listed (as "a[/]b/L_CC.png: ...") in the root's failure.
@pytest.mark.parametrize("folder", ["x[bold]y", "a[/]b"])
def test_predict_names_a_markup_named_exam_verbatim(tmp_path: Path, folder: str,
                                                    random_weights: Path,
                                                    small_pipeline: Path) -> None:
    exam = write_exam(tmp_path / "root" / folder, shape=(200, 150), seed=1)
    (exam / "R_MLO.png").unlink()
    root = tmp_path / "root"
    result = runner.invoke(app, ["predict", str(root), "--weights-dir", str(random_weights),
                                 "--pipeline-config", str(small_pipeline), "--tta", "1",
                                 "--variants", "image-only"])
    assert result.exit_code == 3, result.stderr
    assert (f"{folder}: missing view(s) R-MLO" if "/" not in folder else f"{folder}/L_CC.png"
            ) in result.stderr
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr


def test_a_listed_file_with_markup_in_its_name_is_reported_verbatim(
        tmp_path: Path, random_weights: Path, small_pipeline: Path) -> None:
    exam = write_exam(tmp_path / "e1", shape=(200, 150), seed=1)
    (exam / "L_CC.png").rename(exam / "L_CC[bold]x.png")
    (exam / "exam.yaml").write_text(json.dumps({"views": {
        "L-CC": "L_CC[bold]x.png", "R-CC": "R_CC.png", "L-MLO": "L_MLO.png",
        "R-MLO": "gone[/]R_MLO.png"}}))
    result = runner.invoke(app, ["predict", str(exam), "--weights-dir", str(random_weights),
                                 "--pipeline-config", str(small_pipeline), "--tta", "1",
                                 "--variants", "image-only"])
    assert result.exit_code == 3, result.stderr
    assert "gone[/]R_MLO.png" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
