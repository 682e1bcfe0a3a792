"""Benchmark GMIC (issue 14): FLOPs of one image and of a 5-member exam, the 5-member exam's time
against the floor those FLOPs give at this machine's measured fp32 matmul rate, peak memory of
one GMIC exam, and a full-size DMV-CNN exam (exact, TTA 10) on the same synthetic exam for the
cost ratio. Plain Python; needs only mammocli's own dependencies. Measured in one run, the
machine named in the report.

    python benchmarks/bench_gmic.py                      # GMIC + full-size DMV-CNN (~5-10 min)
    python benchmarks/bench_gmic.py --skip-dmv           # GMIC only (~1 min on 2 cores)
    python benchmarks/bench_gmic.py --device cuda --precision fp32,bf16 --exams 20
    python benchmarks/bench_gmic.py --skip-dmv --plain-layout   # before prepare_for_inference

The GMIC exam always runs at GMIC's real window (2944 x 1920) on the full-size phantom exam of
bench_exam.py; random weights (timing does not depend on their values). Each measurement runs
in its own subprocess, so the peak RSS of one is not inflated by another. A GMIC exam is
stages 1-2 (crop + centre, shared by the members), the standardised windows (shared) and the
five members, each on the four views as one batch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_exam  # noqa: E402  (same folder: machine, RSS and data helpers)

DMV_STAGES = ("crop", "heatmaps", "imageheatmaps")  # the image+heatmaps model's exam


# ----------------------------------------------------------------------------- GMIC worker
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs torch counts for one forward pass (multiply-add = 2; convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    return int(counter.get_total_flops())


def matmul_cpu_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul FLOPs per CPU second (all threads' CPU time): the floor in CPU time, which
    other load on the machine distorts far less than the wall-clock rate."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        c = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - c)
    return 2 * n**3 / best / 1e9


def gmic_worker(args: argparse.Namespace) -> dict[str, Any]:
    from mammocli.families.gmic_inference import gmic_windows, run_ensemble, to_precision
    from mammocli.inference.devices import tune_allocator
    from mammocli.inference.precision import configure
    from mammocli.io.discover import read_exam_folder
    from mammocli.models.gmic import GMIC, MEMBERS, PERCENT_T
    from mammocli.preprocess.gmic import gmic_pipeline_config
    from mammocli.preprocess.prepare import ExamPreparer
    from mammocli.views import VIEWS

    allocator = tune_allocator()  # as the CLI does at start-up
    device = torch.device(args.device)
    dtype = configure(args.precision, device)
    models = {}
    for member in MEMBERS:
        torch.manual_seed(member)
        model = GMIC(PERCENT_T[member]).eval()
        # --plain-layout: the members as they ran before prepare_for_inference (NCHW weights)
        models[member] = (model.to(device=device, dtype=dtype) if args.plain_layout
                          else to_precision(model, device, dtype))
    rss_models = bench_exam.rss_now()
    exam = read_exam_folder(Path(args.exam))
    preparer = ExamPreparer(gmic_pipeline_config())
    runs = []
    bench_exam.reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.exams):
        record: dict[str, float] = {}
        t0 = time.perf_counter()
        prepared = preparer(exam)
        images = [image for view in VIEWS for image in prepared[view]]
        t1 = time.perf_counter()
        x, _ = gmic_windows(images)
        t2 = time.perf_counter()
        _sync(device)
        t3, c3 = time.perf_counter(), time.process_time()
        out = run_ensemble(models, x)  # outputs come back to the CPU: includes the copy
        _sync(device)
        t4, c4 = time.perf_counter(), time.process_time()
        # CPU seconds of the networks, all threads: less distorted by other load than wall
        record = {"prepare": t1 - t0, "windows": t2 - t1, "networks": t4 - t3,
                  "networks_cpu": c4 - c3, "exam": (t2 - t0) + (t4 - t3)}
        runs.append(record)
    peak = bench_exam.peak_rss()
    result: dict[str, Any] = {
        "precision": args.precision, "allocator_tuned": allocator, "runs": runs,
        "images": len(images), "rss_models": rss_models, "peak_rss": peak,
        "y_fusion_first": [float(v) for v in out.y_fusion[0]],
        "threads": torch.get_num_threads(),
    }
    if device.type == "cpu":
        result["matmul_cpu_gflops"] = matmul_cpu_gflops()
    if device.type == "cuda":
        result["peak_gpu"] = torch.cuda.max_memory_allocated(device)
    if args.count_flops:
        one = x[:1].to(device=device, dtype=dtype)
        result["flops_image"] = count_flops(models[MEMBERS[0]], one)
        result["flops_member_exam"] = count_flops(models[MEMBERS[0]],
                                                  x.to(device=device, dtype=dtype))
        result["flops_exam"] = len(models) * result["flops_member_exam"]
    return result


def spawn_gmic(args: argparse.Namespace, precision: str, exam: Path, out: Path,
               count: bool) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--role", "gmic",
               "--precision", precision, "--device", args.device, "--exams", str(args.exams),
               "--threads", str(args.threads), "--exam", str(exam), "--result", str(out)]
    if args.plain_layout:
        command.append("--plain-layout")
    if count:
        command.append("--count-flops")
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def spawn_dmv(args: argparse.Namespace, exam: Path, weights: Path, out: Path) -> dict[str, Any]:
    """One full-size DMV-CNN exam through bench_exam.py's mammocli worker (exact fp32)."""
    dmv_args = argparse.Namespace(size="full", stages=",".join(DMV_STAGES), tta=args.tta,
                                  device=args.device, heatmap_views="", threads=args.threads,
                                  heatmap_grid=0)
    return bench_exam.spawn(dmv_args, "mammocli", "fp32", 1, exam, weights, out)


# ----------------------------------------------------------------------------- report
def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def report(args: argparse.Namespace, info: dict[str, Any], gmic: dict[str, dict[str, Any]],
           dmv: dict[str, Any] | None) -> str:
    rate = info["matmul_fp32_gflops"] * 1e9
    lines = [
        f"GMIC benchmark: synthetic full-size four-view exam, random weights, device "
        f"{info['device']}" + (", plain layout (NCHW weights)" if args.plain_layout else ""),
        f"machine: {info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}, "
        f"ISA {' '.join(info['isa'])}; load average at start "
        f"{' '.join(f'{x:.1f}' for x in info['load_average'])}",
        f"torch {info['torch']}, Python {info['python']}; measured matmul "
        f"{info['matmul_fp32_gflops']:.0f} GFLOP/s fp32, {info['matmul_bf16_gflops']:.0f} "
        "GFLOP/s bf16",
        "",
    ]
    first = next(iter(gmic.values()))
    flops_exam = first.get("flops_exam")
    if flops_exam:
        lines += [
            f"FLOPs (torch FlopCounterMode): one image {first['flops_image'] / 1e9:.1f} GFLOP; "
            f"one member on the exam's {first['images']} images "
            f"{first['flops_member_exam'] / 1e9:.1f} GFLOP; 5-member exam "
            f"{flops_exam / 1e9:.1f} GFLOP",
            f"floor at the measured fp32 matmul rate: {flops_exam / rate:.2f} s per exam",
            "",
        ]
    header = (f"{'GMIC 5-member exam':<20} {'first s':>8} {'best s':>8} {'networks':>9} "
              f"{'x floor':>8} {'exams/s':>8} {'peak RSS':>10}")
    lines += [header, "-" * len(header)]
    for precision, res in gmic.items():
        best = min(res["runs"], key=lambda r: r["exam"])
        ratio = f"{best['exam'] / (flops_exam / rate):7.2f}x" if flops_exam else "       -"
        lines.append(f"{precision:<20} {res['runs'][0]['exam']:8.2f} {best['exam']:8.2f} "
                     f"{best['networks']:9.2f} {ratio} {1 / best['exam']:8.2f} "
                     f"{_gib(res['peak_rss']):>10}"
                     + (f"  GPU {_gib(res['peak_gpu'])}" if "peak_gpu" in res else ""))
        lines.append(f"{'':<20} best exam: crop + centre {best['prepare']:.2f} s, windows "
                     f"{best['windows']:.2f} s, networks {best['networks']:.2f} s"
                     + (f" ({best['networks'] / (flops_exam / rate):.2f}x the floor)"
                        if flops_exam else ""))
        if flops_exam and "matmul_cpu_gflops" in res:
            cpu = min(r["networks_cpu"] for r in res["runs"])
            cpu_floor = flops_exam / (res["matmul_cpu_gflops"] * 1e9)
            lines.append(f"{'':<20} networks' CPU time (best run, {res['threads']} threads) "
                         f"{cpu:.2f} s = {cpu / cpu_floor:.2f}x the CPU-time floor "
                         f"({res['matmul_cpu_gflops']:.0f} GFLOP per CPU s measured in the "
                         "worker; robust to other load)")
        lines.append(f"{'':<20} RSS with the five members loaded {_gib(res['rss_models'])}; "
                     f"peak over {len(res['runs'])} exam(s) {_gib(res['peak_rss'])} (goal < 2 GiB)")
    if len(gmic) > 1 and "fp32" in gmic:
        ref = gmic["fp32"]["y_fusion_first"]
        for precision, res in gmic.items():
            if precision != "fp32":
                dev = max(abs(a - b) for a, b in zip(ref, res["y_fusion_first"], strict=True))
                lines.append(f"{precision} vs fp32: y_fusion max |diff| {dev:.2g} (first image)")
    if dmv is not None:
        run = dmv["runs"][0]
        dmv_seconds = sum(run[s]["seconds"] for s in DMV_STAGES)
        gmic_seconds = min(r["exam"] for r in gmic.get("fp32", first)["runs"])
        heat = run["heatmaps"]
        dmv_gflop = (heat["forwarded"] * bench_exam.PATCH_GFLOP_256
                     + run["imageheatmaps"]["draws"] * bench_exam.RESNET_GFLOP_FULL[3])
        lines += [
            "",
            f"DMV-CNN image+heatmaps exam (exact fp32, TTA {args.tta}, bench_exam.py's mammocli "
            f"worker): crop {run['crop']['seconds']:.1f} s, heatmaps "
            f"{heat['seconds']:.1f} s ({heat['forwarded']} of {heat['patches']} patches "
            f"forwarded), classifier {run['imageheatmaps']['seconds']:.1f} s; total "
            f"{dmv_seconds:.1f} s, ~{dmv_gflop / 1e3:.1f} TFLOP run, peak RSS "
            f"{_gib(max(run[s]['peak_rss'] for s in DMV_STAGES))}",
            f"DMV-CNN / GMIC 5-member exam: {dmv_seconds / gmic_seconds:.1f}x the time"
            + (f", {dmv_gflop * 1e9 / flops_exam:.1f}x the FLOPs" if flops_exam else "")
            + " (goal >= 20x)",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--exams", type=int, default=2,
                        help="GMIC exams per process (the first includes warm-up)")
    parser.add_argument("--tta", type=int, default=10, help="DMV-CNN test-time augmentation")
    parser.add_argument("--skip-dmv", action="store_true", help="no DMV-CNN comparison")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in every process (default: torch's choice)")
    parser.add_argument("--plain-layout", action="store_true",
                        help="members without prepare_for_inference (the layout before)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the synthetic exam and weights here (default: a temp dir)")
    parser.add_argument("--output", type=Path, default=None, help="also write the report here")
    parser.add_argument("--role", choices=("gmic",), help=argparse.SUPPRESS)
    parser.add_argument("--count-flops", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--exam", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.role:
        args.result.write_text(json.dumps(gmic_worker(args)))
        return

    info = bench_exam.machine(args.device)
    with tempfile.TemporaryDirectory(prefix="mammocli-bench-gmic-") as tmp:
        workdir = args.workdir or Path(tmp)
        exam, weights = bench_exam.build_inputs(workdir, "full")
        gmic = {}
        for i, precision in enumerate(args.precision.split(",")):
            gmic[precision] = spawn_gmic(args, precision, exam,
                                         workdir / f"gmic-{precision}.json", count=i == 0)
        dmv = None if args.skip_dmv else spawn_dmv(args, exam, weights, workdir / "dmv.json")
    text = report(args, info, gmic, dmv)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
