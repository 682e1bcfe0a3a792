"""Benchmark stages 1-2 (read, orient, crop, best centre) of full-size exams: how many exams per
second one process prepares, and how many N preparation processes do (`predict
--prepare-workers N`). This CPU work must keep up with the device: a GPU computes a full-size
exam in well under a second.

    python benchmarks/bench_prepare.py --exams 8 --workers 1,2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_exam import build_inputs, pipeline_config  # noqa: E402

from mammocli.io.discover import read_exam_folder  # noqa: E402
from mammocli.preprocess.prepare import ExamPreparer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exams", type=int, default=8)
    parser.add_argument("--workers", default="1,2", help="comma-separated process counts")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mammocli-bench-") as tmp:
        exam_dir, _ = build_inputs(args.workdir or Path(tmp), "full")
        exam = read_exam_folder(exam_dir)
        prepare = ExamPreparer(pipeline_config("full", 10))
        prepare(exam)  # warm the page cache
        print(f"{args.exams} full-size four-view exams (PNG), {os.cpu_count()} CPUs")
        for workers in (int(w) for w in args.workers.split(",")):
            started = time.perf_counter()
            if workers <= 1:
                for _ in range(args.exams):
                    prepare(exam)
            else:
                context = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(workers, mp_context=context) as pool:
                    list(pool.map(prepare, [exam] * args.exams))
            seconds = time.perf_counter() - started
            print(f"  {workers} process(es): {seconds:6.1f} s, {args.exams / seconds:5.2f} "
                  "exams/s (process start-up included)")


if __name__ == "__main__":
    main()
