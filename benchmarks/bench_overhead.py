"""What sharding, per-exam locks, the results-folder ledger and progress lines cost (issue 16
goal: under 1% of a run of 50 small exams).

The same 50 synthetic exams (400 x 300 px, small pipeline, image-only, no TTA, CPU) are run
through `mammocli.api.predict_many` in two ways, alternately (`--repeats` pairs):

- plain: `discover` the root, results to one JSON Lines file (no shard, no lock, no ledger);
- archive: the exam list, `--shard 1/1`, `-o DIR/` with `--resume` (one file per exam, written
  atomically under a per-exam lock; the folder read back as a ledger before the run) and
  `--progress-json`, as a cluster task runs it.

The runs are interleaved, the order swapped every pair. Printed: the median wall and CPU time
of each kind of run (model loading included, the same in both), their ratios, and the archive
run's own bookkeeping measured directly (selecting and planning, and the write
stage, which includes the lock release and the atomic writes).

    python benchmarks/bench_overhead.py --exams 50 --repeats 4
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

from mammocli.api import ModelRequest, RunOptions, load_pipeline_config, predict_many
from mammocli.inference.sources import SourceRequest, exams_to_run
from mammocli.io.dicom.options import DicomOptions
from mammocli.io.discover import discover
from mammocli.io.exam_list import write_exam_list
from mammocli.outputs.progress import ProgressLog
from mammocli.outputs.sinks import FolderSink, JsonFileSink, Outputs, plan_exams
from mammocli.synthetic.phantoms import write_exam, write_random_weights
from mammocli.vocabulary import Variant
from mammocli.weights.overrides import weights_locator

SMALL = Path(__file__).resolve().parents[1] / "examples" / "small_pipeline.yaml"


def _plain(root: Path, out: Path, request: ModelRequest,
           options: RunOptions) -> tuple[float, float]:
    started = time.perf_counter()
    planned, _ = plan_exams(discover(root).exams, root)
    outputs = Outputs.open([JsonFileSink(out, False, overwrite=True, resume=False)], planned)
    report = predict_many(planned, request, options, outputs)
    return time.perf_counter() - started, report.stages["write"]


def _archive(listing: Path, out: Path, request: ModelRequest,
             options: RunOptions) -> tuple[float, float, float]:
    started = time.perf_counter()
    source = SourceRequest(exams=listing, shard="1/1", output=f"{out}/", resume=True)
    with exams_to_run(source, DicomOptions()) as run:
        outputs = Outputs.open([FolderSink(out, overwrite=False, resume=True)], run.planned)
        progress = ProgressLog(out.parent / f"{out.name}.progress.jsonl", len(run.planned))
        selecting = time.perf_counter() - started
        report = predict_many(run.planned, request, options, outputs,
                              on_outcome=lambda p, o: progress.exam(p.exam.exam_id, "ok"))
        progress.close(report.stages, report.elapsed_s)
    return time.perf_counter() - started, selecting, report.stages["write"]


def _cpu() -> float:
    """CPU seconds of this process and its finished children (preparation pools)."""
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                      resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exams", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        work = Path(tmp)
        root = work / "archive"
        for i in range(args.exams):
            write_exam(root / f"e{i:03d}", shape=(400, 300), seed=i)
        listing = work / "exams.csv"
        write_exam_list(listing, [(f"archive/e{i:03d}", f"e{i:03d}") for i in range(args.exams)])
        weights = write_random_weights(work / "weights", seed=0)
        request = ModelRequest(variants=(Variant.IMAGE_ONLY,),
                               locate=weights_locator(weights, {}, progress=False))
        options = RunOptions(config=load_pipeline_config(SMALL, tta=0), device="cpu")
        # Warm-up (imports, first model load, allocator): not timed.
        _plain(root / "e000", work / "warm.jsonl", request, options)
        plain, sharded, selecting, writing, plain_writing = [], [], [], [], []
        plain_cpu, sharded_cpu = [], []
        for n in range(args.repeats):
            # interleaved, the order swapped every pair (ABBA): a drift in the machine's load
            # weighs on both alike
            for kind in ("plain", "archive") if n % 2 == 0 else ("archive", "plain"):
                cpu = _cpu()
                if kind == "plain":
                    wall, write = _plain(root, work / f"plain-{n}.jsonl", request, options)
                    plain.append(wall)
                    plain_writing.append(write)
                    plain_cpu.append(_cpu() - cpu)
                else:
                    wall, select, write = _archive(listing, work / f"res-{n}", request, options)
                    sharded.append(wall)
                    selecting.append(select)
                    writing.append(write)
                    sharded_cpu.append(_cpu() - cpu)
    p, s = statistics.median(plain), statistics.median(sharded)
    pc, sc = statistics.median(plain_cpu), statistics.median(sharded_cpu)
    print(f"{platform.processor() or platform.machine()}, {args.exams} exams, "
          f"{args.repeats} pair(s) of runs (interleaved; medians), load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"plain   (discover, JSON Lines file):                    {p:8.2f} s  {pc:8.2f} CPU s")
    print(f"archive (list, shard, locks, ledger, progress lines):   {s:8.2f} s  {sc:8.2f} CPU s")
    print(f"ratio archive / plain: wall {s / p:.4f} ({(s / p - 1) * 100:+.2f}%), CPU "
          f"{sc / pc:.4f} ({(sc / pc - 1) * 100:+.2f}%)")
    bookkeeping = statistics.median(selecting) + statistics.median(writing)
    print(f"archive bookkeeping measured directly: list+shard+plan (exam discovery included) "
          f"{statistics.median(selecting):.3f}"
          f" s, write stage {statistics.median(writing):.3f} s = {bookkeeping / s * 100:.2f}% "
          "of the run")
    extra = statistics.median(writing) - statistics.median(plain_writing)
    print(f"write stage, archive minus plain (one locked file per exam vs one line each): "
          f"{extra:.3f} s = {extra / s * 100:.2f}% of the run")


if __name__ == "__main__":
    main()
