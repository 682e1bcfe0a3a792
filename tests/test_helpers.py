"""One helper per concern (issue 13): hashes, cache paths, the CSV reader, the integral image
and pad-to-patch, each tested where it lives; its users are tested through them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from mammocli.errors import ConfigError, InputError
from mammocli.hashing import git_blob_sha1, sha256_file
from mammocli.io.csv_tables import read_csv, read_records
from mammocli.io.discover import read_views_csv
from mammocli.preprocess.patches import box_sums, integral_image, pad_to_patch, patch_sums
from mammocli.synthetic.datasets import write_patch_dataset
from mammocli.train.manifest import read_patch_manifest
from mammocli.views import View
from mammocli.weights import store
from mammocli.weights.cache import sample_path, samples_cache_dir, weights_cache_dir
from mammocli.weights.registry import Entry, Registry, load_registry

# --- hashes --------------------------------------------------------------------------------------

def test_file_hashes_stream_the_content(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello\n")
    assert git_blob_sha1(path) == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object
    big = tmp_path / "big.bin"
    data = bytes(range(256)) * 9000  # more than one read chunk
    big.write_bytes(data)
    assert sha256_file(big) == hashlib.sha256(data).hexdigest()


def test_training_records_manifest_hashes_with_the_one_helper() -> None:
    import mammocli.train.build as build
    import mammocli.train.export as export
    import mammocli.weights.registry as registry

    assert not hasattr(build, "sha256")  # the second sha256 helper is gone
    assert build.sha256_file is export.sha256_file is registry.sha256_file is sha256_file
    assert registry.git_blob_sha1 is git_blob_sha1


# --- cache paths ---------------------------------------------------------------------------------

def test_cache_paths_follow_the_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMMOCLI_CACHE_DIR", str(tmp_path / "c"))
    assert weights_cache_dir() == tmp_path / "c" / "weights"
    assert samples_cache_dir() == tmp_path / "c" / "samples"
    entry = Entry(name="L-CC.png", path="x", git_sha1="0" * 40, licence="x", exam="0_L-CC")
    assert sample_path(entry, tmp_path) == tmp_path / "0_L-CC" / "L-CC.png"
    flat = Entry(name="a.png", path="x", git_sha1="0" * 40, licence="x")
    assert sample_path(flat, tmp_path) == tmp_path / "a.png"


def test_importing_a_sample_lands_where_download_puts_it(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAMMOCLI_CACHE_DIR", str(tmp_path / "c"))
    source = tmp_path / "mine.png"
    source.write_bytes(b"sample bytes")
    real = load_registry()
    entry = Entry(name="L-CC.png", path="x", git_sha1=git_blob_sha1(source), licence="x",
                  exam="0_L-CC")
    registry = Registry(weights=real.weights, samples=(entry,), base_url=real.base_url)
    match, target = store.import_file(source, registry)
    assert match == entry
    assert target == sample_path(entry, samples_cache_dir())
    assert target.read_bytes() == b"sample bytes"


# --- the CSV reader ------------------------------------------------------------------------------

def test_csv_records_carry_the_line_they_start_on(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes('\ufeffa,b\n\n"two\nlines",x\nlast,y\n'.encode())
    records = read_records(path)
    assert [(r.line, r.cells) for r in records] == [
        (1, ["a", "b"]), (2, []), (3, ["two\nlines", "x"]), (5, ["last", "y"])]
    table = read_csv(path)
    assert table.header == ["a", "b"]  # no BOM in the first column's name
    assert [(r.line, r.values["a"]) for r in table.rows] == [(3, "two\nlines"), (5, "last")]


def test_csv_table_pads_short_rows_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a, b ,c\n1,2\n")
    assert read_csv(path).rows[0].values == {"a": "1", "b": "2", "c": ""}
    with pytest.raises(InputError, match="missing.csv: file not found"):
        read_csv(tmp_path / "missing.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError, match="bin.csv: not a readable CSV file"):
        read_csv(tmp_path / "bin.csv")


def test_views_csv_lines_count_file_lines(tmp_path: Path) -> None:
    # A quoted name spanning two lines: the bad view below it is on line 4 of the file.
    path = tmp_path / "views.csv"
    path.write_text('file,view\n"odd\nname.dcm",L-CC\nb.dcm,X-CC\n')
    with pytest.raises(ConfigError, match="views.csv line 4: unknown view 'X-CC'"):
        read_views_csv(path)
    path.write_text('file,view\n"odd\nname.dcm",L-CC\n')
    assert read_views_csv(path) == {"odd\nname.dcm": View.L_CC}


def test_training_manifest_with_a_bom_reads(tmp_path: Path) -> None:
    # Spreadsheet programs save "CSV UTF-8" with a BOM; the first column is still `image`.
    manifest = write_patch_dataset(tmp_path / "p", 2, shape=(80, 60), seed=0)
    manifest.write_bytes(b"\xef\xbb\xbf" + manifest.read_bytes())
    rows = read_patch_manifest(manifest)
    assert [r.image.name for r in rows] == ["img000.png", "img001.png"]


# --- integral image and pad-to-patch -------------------------------------------------------------

def test_integral_image_box_and_patch_sums_match_direct_sums() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((13, 17)) > 0.6
    integral = integral_image(mask)
    assert integral.dtype == np.int64 and integral.shape == (14, 18)
    y0, x0 = np.array([0, 3, 7]), np.array([0, 5, 2])
    y1, x1 = y0 + 4, x0 + 6
    expected = [mask[a:b, c:d].sum() for a, b, c, d in zip(y0, y1, x0, x1, strict=True)]
    assert box_sums(integral, y0, x0, y1, x1).tolist() == expected
    sums = patch_sums(integral, 5)
    assert sums.shape == (9, 13)
    assert sums[4, 6] == mask[4:9, 6:11].sum()


def test_pad_to_patch_pads_bottom_right_with_background() -> None:
    image = np.arange(1, 7, dtype=np.uint16).reshape(2, 3)
    padded = pad_to_patch(image, 4)
    assert padded.shape == (4, 4) and padded.dtype == np.uint16
    assert (padded[:2, :3] == image).all() and padded[2:].sum() == 0 and padded[:, 3].sum() == 0
    big = np.ones((5, 6), dtype=bool)
    assert pad_to_patch(big, 4) is big  # large enough: untouched
