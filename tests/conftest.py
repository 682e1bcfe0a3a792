"""Shared fixtures: isolated cache, no colour, reference data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(
    os.environ.get("MAMMOCLI_REFERENCE_DIR", REPO.parent / "shared" / "nyu" / "reference")
)
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMMOCLI_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("MAMMOCLI_OFFLINE", raising=False)
    monkeypatch.delenv("MAMMOCLI_WEIGHTS_URL", raising=False)


def require_reference() -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE_DIR} (needs ../shared/nyu/reference)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return require_reference()


@pytest.fixture(scope="session")
def reader_study_csv() -> Path:
    path = SHARED_DATA / "reader_study_720.csv"
    if not path.is_file():
        pytest.skip(f"reader study data not found at {path} (needs ../shared/data)")
    return path
