"""Benchmark `mammocli scan` over a generated archive of 20,000 small DICOM files (issue 16 goal:
at least 1,000 files/s on a 2-core machine).

The archive is 5,000 four-view studies in `site/<year>/<exam>/` folders (16 x 16 pixel images:
scan reads headers only, so pixel size does not matter; headers are the full set the test
factory writes, incl. view code sequences). Timed: `scan_archive` with 1 and N processes (the
page cache is warmed by a first pass) and the whole command in a fresh process.

    python benchmarks/bench_scan.py --files 20000 --workers 1,2
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from dicom_factory import make_mg  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from mammocli.inference.scan_tree import scan_archive  # noqa: E402

VIEWS = (("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))


def build(root: Path, files: int) -> None:
    templates = [make_mg(lat, view, rows=16, cols=16, seed=i, instance_number=i + 1)[0]
                 for i, (lat, view) in enumerate(VIEWS)]
    for n in range(files // 4):
        folder = root / f"site{n % 3}" / f"{2015 + n % 8}" / f"exam{n:06d}"
        folder.mkdir(parents=True)
        study = generate_uid()
        for (lat, view), ds in zip(VIEWS, templates, strict=True):
            ds.StudyInstanceUID = study
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(folder / f"{lat}_{view}.dcm", enforce_file_format=True)


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the pool's workers)."""
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                      resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2", help="comma-separated process counts")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mammocli-bench-scan-", dir=args.workdir) as tmp:
        root = Path(tmp) / "archive"
        t = time.perf_counter()
        build(root, args.files)
        print(f"built {args.files} DICOM files in {time.perf_counter() - t:.1f} s")
        scan_archive(root, workers=1)  # warm the page cache
        for workers in (int(w) for w in args.workers.split(",")):
            before = _cpu()
            result = scan_archive(root, workers=workers)
            cpu = _cpu() - before
            assert len(result.exams) == args.files // 4, len(result.exams)
            # CPU seconds too: on a shared machine the wall clock measures the neighbours
            print(f"scan_archive, {workers} process(es): {result.files} files in "
                  f"{result.seconds:.2f} s = {result.files_per_second:,.0f} files/s; "
                  f"{cpu:.1f} CPU s = {result.files / cpu:,.0f} files per CPU second "
                  f"({len(result.exams)} exams)")
        t = time.perf_counter()
        child = subprocess.run([sys.executable, "-m", "mammocli", "scan", str(root), "-o",
                                str(Path(tmp) / "exams.csv"), "-q"], capture_output=True,
                               text=True, check=False)
        seconds = time.perf_counter() - t
        assert child.returncode == 0, child.stderr
        print(f"mammocli scan (fresh process, all CPUs): {seconds:.2f} s = "
              f"{args.files / seconds:,.0f} files/s (goal >= 1,000)")
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
