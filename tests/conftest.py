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


SMALL_PIPELINE_YAML = """\
cc_window: [268, 194]
mlo_window: [297, 175]
crop_iterations: 10
crop_buffer: 5
patch_size: 64
patch_stride: 32
heatmap_batch_size: 32
max_crop_noise: [10, 10]
max_crop_size_noise: 10
"""


@pytest.fixture(scope="session")
def small_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline config of small sizes, for fast end-to-end runs on synthetic exams."""
    path = tmp_path_factory.mktemp("config") / "small.yaml"
    path.write_text(SMALL_PIPELINE_YAML)
    return path


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five official files with random weights (seed 0), made once per session."""
    from mammocli.synthetic.phantoms import write_random_weights

    return write_random_weights(tmp_path_factory.mktemp("weights"), seed=0)
