"""Benchmark `mammocli status` over a results folder of 100,000 records (issue 16 goal: < 5 s).

Records are the folder sink's own layout (`to_json(record, indent=2)`) of full-sized results
(four views, two variants, two weight files) with 10% failures and a few held locks; they are
written with plain writes (the sink's fsync per file would only slow the set-up). Timed: the
library call (`read_ledger` + `ledger_status` against a 100,000-row exam list) and the whole
command in a fresh process (start-up included).

    python benchmarks/bench_status.py --records 100000
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

from mammocli.io.exam_list import write_exam_list
from mammocli.outputs.ledger import ledger_status, read_ledger
from mammocli.outputs.schema import (
    BreastPredictions,
    ExamFailure,
    ImageReport,
    InputRef,
    PredictionResult,
    Probabilities,
    WeightsUsed,
    to_json,
)
from mammocli.views import VIEWS
from mammocli.vocabulary import Family, ModelKind


def _result(exam_id: str) -> PredictionResult:
    def breasts(x: float) -> BreastPredictions:
        return BreastPredictions(left=Probabilities(benign=0.1 * x, malignant=0.2 * x),
                                 right=Probabilities(benign=0.3 * x, malignant=0.4 * x))

    views = {v.value: [ImageReport(source=f"series1/{v.value}.dcm", crop_window=(0, 2900, 0, 1900),
                                   flipped=v.value.startswith("R"), orientation_from="dicom",
                                   best_center=(1400, 200), distance_from_starting_side=3)]
             for v in VIEWS}
    return PredictionResult(
        exam_id=exam_id, family=Family.DMV_CNN, model=ModelKind.VIEW_WISE, views=views,
        predictions={"image_only": breasts(0.5), "image_and_heatmaps": breasts(1.0)},
        primary_variant="image_and_heatmaps", device="cuda:0", seed=0, rng_mode="exam", tta=10,
        duration_s=3.2, mammocli_version="0.1.0",
        weights=[WeightsUsed(name="sample_image_model.p", sha256="a" * 64),
                 WeightsUsed(name="sample_patch_model.p", sha256="b" * 64)],
        input=InputRef(folder=f"2019/{exam_id}", fingerprint="sha256:" + "c" * 64))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build(folder: Path, records: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"exam-{i:07d}" for i in range(records + records // 20)]  # 5% not done yet
    template = to_json(_result("EXAM"), indent=2) + "\n"
    for i, exam_id in enumerate(ids[:records]):
        if i % 10 == 9:
            text = to_json(ExamFailure(exam_id=exam_id, error=f"{exam_id}: missing view R-MLO",
                                       hint="add it", exit_code=3), indent=2) + "\n"
        else:
            text = template.replace('"EXAM"', f'"{exam_id}"')
        with open(folder / f"{exam_id}.json", "w", encoding="utf-8") as f:
            f.write(text)
    (folder / ".locks").mkdir(exist_ok=True)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mammocli-bench-status-", dir=args.workdir) as tmp:
        folder = Path(tmp) / "results"
        t = time.perf_counter()
        ids = build(folder, args.records)
        exams_csv = Path(tmp) / "exams.csv"
        write_exam_list(exams_csv, [(f"2019/{i}", i) for i in ids])
        print(f"built {args.records} records in {time.perf_counter() - t:.1f} s "
              f"({sum(f.stat().st_size for f in folder.iterdir()) / 1e6:.0f} MB)")

        t, cpu = time.perf_counter(), time.process_time()
        status = ledger_status(read_ledger(folder), ids)
        library, cpu = time.perf_counter() - t, time.process_time() - cpu
        assert status.done + status.failed == args.records, status
        print(f"library: read_ledger + ledger_status: {library:.2f} s "
              f"({args.records / library:,.0f} records/s; {cpu:.2f} CPU s); done "
              f"{status.done}, failed "
              f"{status.failed}, missing {status.missing}")

        t, before = time.perf_counter(), _children_cpu()
        child = subprocess.run([sys.executable, "-m", "mammocli", "status", str(folder),
                                "--exams", str(exams_csv)], capture_output=True, text=True,
                               check=False)
        command, command_cpu = time.perf_counter() - t, _children_cpu() - before
        assert child.returncode == 0, child.stderr
        # CPU seconds too: on a loaded machine the wall clock mostly measures the wait for a CPU
        print(f"command: mammocli status --exams (fresh process): {command:.2f} s, "
              f"{command_cpu:.2f} CPU s (goal < 5 s)")
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}", flush=True)


if __name__ == "__main__":
    main()
