"""The library reports (mammocli.reporting); only the console renders."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from mammocli import console, reporting


def test_track_is_silent_without_a_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reporting, "_factory", None)
    with reporting.track("work", total=3) as bar:
        assert bar is None


def test_track_is_silent_when_disabled() -> None:
    with reporting.track("work", total=3, enabled=False) as bar:
        assert bar is None


def test_the_console_renders_tracked_work_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=buffer, force_terminal=True, width=100))
    with reporting.track("epoch [bold]1", total=4, completed=1) as bar:
        assert bar is not None
        bar.advance(2, description="epoch [bold]2")  # names are shown verbatim, never markup
    text = buffer.getvalue()
    assert "epoch [bold]2" in text
    assert "3/4" in text


def test_the_console_shows_no_bar_off_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=buffer, force_terminal=False))
    with reporting.track("work", total=4) as bar:
        assert bar is None
    with reporting.track("file", total=100, unit="bytes") as bytes_bar:
        assert bytes_bar is not None  # downloads: plain lines (tests/test_weights_fetch.py)
        bytes_bar.advance(5)
    assert buffer.getvalue() == ""  # nothing until 10 % have arrived
