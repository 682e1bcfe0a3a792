"""Benchmark one four-view exam end to end: mammocli against a straightforward implementation of
the same method (benchmarks/baseline.py), on a synthetic phantom exam with random weights in the
official formats. Plain Python; needs only mammocli's own dependencies.

    python benchmarks/bench_exam.py --size full    # window-sized crops (~15 min on 2 cores)
    python benchmarks/bench_exam.py --size small   # a scaled-down smoke run (< 1 min)
    python benchmarks/bench_exam.py --precision fp32,bf16 --exams 3 --skip-baseline

Each implementation runs in its own subprocess, baseline first: the allocator setting mammocli
makes at start-up (glibc mallopt) is process-wide, so the baseline process never has it. With
--rounds N the two alternate (baseline, mammocli, baseline, ...) and the best time per stage is
kept, which evens out load from other users of the machine. Ratios are baseline / mammocli.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
STAGES = ("crop", "heatmaps", "image", "imageheatmaps")
STAGE_NAMES = {
    "crop": "crop + centre",
    "heatmaps": "heatmaps",
    "image": "image-only TTA",
    "imageheatmaps": "image+heatmaps TTA",
}
PATCH_GFLOP_256 = 7.40  # one DenseNet-121 pass on a 256 x 256 patch (multiply-add = 2 FLOP)
RESNET_GFLOP_FULL = {1: 29.6, 3: 33.6}  # ResNet-22 on a full-size window, by input channels
# Full size: phantom image shapes whose crops are about window-sized (2677 x 1942 CC,
# 2974 x 1748 MLO); the crop keeps ~0.84 of the height and ~0.7 of the width.
FULL_SHAPES = {"CC": (3068, 2703), "MLO": (3421, 2426)}
SMALL_SHAPES = {"CC": (306, 270), "MLO": (342, 243)}


# ----------------------------------------------------------------------------- measurement
def rss_now() -> int:
    return _status_kib("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Linux >= 4.0: writing 5 to clear_refs resets the peak (VmHWM) to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_kib(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def matmul_gflops(dtype: torch.dtype, device: str = "cpu", n: int = 2048,
                  repeats: int = 5) -> float:
    """Best-of-N rate of an n x n matmul (2 n^3 FLOP) on the device (CPU: all torch threads)."""
    n = n if device == "cpu" else 8192
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def machine(device: str = "cpu") -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "isa": isa,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "device": (torch.cuda.get_device_name(torch.device(device))
                   if device.startswith("cuda") else "cpu"),
        "matmul_fp32_gflops": matmul_gflops(torch.float32, device),
        "matmul_bf16_gflops": matmul_gflops(torch.bfloat16, device),
    }


# ----------------------------------------------------------------------------- data
def build_inputs(workdir: Path, size: str) -> tuple[Path, Path]:
    """A synthetic four-view PNG exam (authors' layout) and random official-format weights."""
    from mammocli.synthetic.phantoms import phantom, write_png16, write_random_weights
    from mammocli.views import VIEWS, Side

    exam = workdir / "exam"
    weights = workdir / "weights"
    shapes = FULL_SHAPES if size == "full" else SMALL_SHAPES
    rng = np.random.default_rng(0)
    for view in VIEWS:
        target = exam / f"{view.side.letter}_{view.angle.value}.png"
        facing = Side.RIGHT if view.side is Side.LEFT else Side.LEFT
        image = phantom(shapes[view.angle.name], rng, facing=facing)
        if not target.exists():
            write_png16(target, image)
    if not (weights / "sample_patch_model.p").exists():
        write_random_weights(weights, seed=0)
    return exam, weights


def pipeline_config(size: str, tta: int) -> Any:
    from mammocli.config import PipelineConfig

    base = PipelineConfig() if size == "full" else PipelineConfig.small()
    return base.with_(tta=tta)


# ----------------------------------------------------------------------------- workers
_device = "cpu"  # the worker's device, set by worker()


def _timed(record: dict[str, Any], stage: str, fn: Callable[[], Any]) -> Any:
    """Run and time one stage (waiting for the GPU, if any, before and after)."""
    reset_peak_rss()
    cuda = _device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    record[stage] = {"seconds": time.perf_counter() - started, "peak_rss": peak_rss()}
    if cuda:
        record[stage]["peak_gpu"] = torch.cuda.max_memory_allocated()
    return out


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One implementation in this process; returns timings, counts and outputs."""
    global _device
    _device = args.device
    from mammocli.inference.randomness import ExamRandomness
    from mammocli.io.discover import read_exam_folder
    from mammocli.vocabulary import ModelKind, Variant

    stages = args.stages.split(",")
    config = pipeline_config(args.size, args.tta)
    exam = read_exam_folder(Path(args.exam))
    weights = Path(args.weights)
    baseline = args.role == "baseline"
    allocator = False
    if baseline:
        sys.path.insert(0, str(HERE))
        import baseline as straightforward

        straightforward.install()
    else:
        from mammocli.inference.devices import tune_allocator

        allocator = tune_allocator()

    from mammocli.families.dmv_cnn import DmvCnnModels
    from mammocli.inference.predictor import Predictor

    started = time.perf_counter()
    models = DmvCnnModels.load(ModelKind.VIEW_WISE,
                               (Variant.IMAGE_ONLY, Variant.IMAGE_AND_HEATMAPS),
                               lambda name: weights / name, torch.device(args.device), config,
                               patch_classifier=True,
                               precision="fp32" if baseline else args.precision)
    load_seconds = time.perf_counter() - started
    plain_patch_model = None
    if baseline:  # plain fp32 NCHW, as loaded; the engine keeps only its optimised plan
        from mammocli.models.loading import load_patch_classifier
        from mammocli.vocabulary import PATCH_WEIGHTS

        plain_patch_model = load_patch_classifier(weights / PATCH_WEIGHTS).to(
            torch.device(args.device)).eval()
        for model in models.breast.values():
            model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    predictor = Predictor(models, config)
    engine = models.heatmap_engine
    assert engine is not None
    runs = []
    outputs: dict[str, Any] = {}
    for index in range(args.exams):
        rng = ExamRandomness(config.seed)
        record: dict[str, Any] = {}
        prepared = _timed(record, "crop", lambda: predictor.prepare(exam))
        heatmaps: dict[Any, Any] = {}
        if "heatmaps" in stages or "imageheatmaps" in stages:
            from mammocli.inference.heatmaps import Heatmaps
            from mammocli.views import View

            # --heatmap-views: only these views go through the patch network (to time the
            # stage at full size in less time); the others get constant stand-in heatmaps.
            chosen = {View(v) for v in args.heatmap_views.split(",")} if args.heatmap_views \
                else set(prepared)
            subset = {v: imgs for v, imgs in prepared.items() if v in chosen}
            if args.heatmap_grid:
                subset = {v: [_region(img, args.heatmap_grid, config) for img in imgs]
                          for v, imgs in subset.items()}
            if baseline:
                from mammocli.views import VIEWS

                def run_heatmaps(subset: Any = subset, rng: Any = rng) -> dict[Any, Any]:
                    views = [v for v in VIEWS if v in subset]
                    flat = straightforward.heatmaps(
                        plain_patch_model, [img.pixels for v in views for img in subset[v]],
                        rng.strides, config, batch_size=config.heatmap_batch_size)
                    return {v: [flat[i]] for i, v in enumerate(views)}

                heatmaps = _timed(record, "heatmaps", run_heatmaps)
                forwarded = sum(h.patches for hs in heatmaps.values() for h in hs)
            else:
                before = engine.forwarded
                heatmaps = _timed(record, "heatmaps",
                                  lambda p=subset, r=rng: models.compute_heatmaps(p, r))
                forwarded = engine.forwarded - before
            record["heatmaps"]["patches"] = sum(h.patches for hs in heatmaps.values()
                                                for h in hs)
            record["heatmaps"]["forwarded"] = forwarded
            if index == 0:  # what was computed, for the comparison with the baseline
                outputs["heatmaps"] = {
                    f"{v.value}/{k}": getattr(hs[0], k).tolist() for v, hs in heatmaps.items()
                    for k in ("benign", "malignant")} if args.size == "small" else {}
                outputs["heatmap_stats"] = {
                    f"{v.value}/{k}": float(np.asarray(getattr(hs[0], k), np.float64).sum())
                    for v, hs in heatmaps.items() for k in ("benign", "malignant")}
            for view, imgs in prepared.items():
                if view not in heatmaps or args.heatmap_grid:  # region maps: timing only
                    heatmaps[view] = [Heatmaps(np.full(i.pixels.shape, 0.5, np.float32),
                                               np.full(i.pixels.shape, 0.5, np.float32), 0)
                                      for i in imgs]
        for stage, variant in (("image", Variant.IMAGE_ONLY),
                               ("imageheatmaps", Variant.IMAGE_AND_HEATMAPS)):
            if stage not in stages:
                continue
            if baseline:
                from mammocli.inference.classify import ClassifierImage

                use = variant == Variant.IMAGE_AND_HEATMAPS
                images = {v: [ClassifierImage(img.pixels, img.best_center,
                                              (heatmaps[v][i].benign, heatmaps[v][i].malignant)
                                              if use else None)
                              for i, img in enumerate(prepared[v])] for v in prepared}
                labels = _timed(record, stage, lambda m=models.breast[variant], im=images,
                                v=variant, r=rng: straightforward.view_wise(
                                    m, im, config, r.tta(v), config.tta))
            else:
                labels, _, _ = _timed(record, stage, lambda v=variant, p=prepared,
                                      h=heatmaps, r=rng: models.classify(v, p, h, r, config))
            record[stage]["draws"] = 4 * max(config.tta, 1)
            outputs[f"{stage}_labels"] = labels
        record["rss_after_exam"] = rss_now()
        runs.append(record)
        if index == 0:
            outputs["crop_shapes"] = {v.value: list(p[0].pixels.shape)
                                      for v, p in prepared.items()}
    return {"role": args.role, "precision": "fp32" if baseline else args.precision,
            "allocator_tuned": allocator, "load_seconds": load_seconds, "runs": runs,
            "outputs": outputs, "threads": torch.get_num_threads()}


def _region(image: Any, grid: int, config: Any) -> Any:
    """A grid x grid-patch region of a cropped image, from the chest wall (column 0) and
    centred vertically: all tissue, so no background patches for mammocli to skip."""
    from dataclasses import replace

    side = config.patch_size + config.patch_stride * (grid - 1)
    top = max((image.pixels.shape[0] - side) // 2, 0)
    pixels = np.ascontiguousarray(image.pixels[top:top + side, :side])
    return replace(image, pixels=pixels)


def spawn(args: argparse.Namespace, role: str, precision: str, exams: int,
          exam: Path, weights: Path, out: Path) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--role", role,
               "--size", args.size, "--precision", precision, "--stages", args.stages,
               "--tta", str(args.tta), "--device", args.device, "--exams", str(exams),
               "--heatmap-views", args.heatmap_views, "--threads", str(args.threads),
               "--heatmap-grid", str(args.heatmap_grid),
               "--exam", str(exam), "--weights", str(weights), "--result", str(out)]
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


# ----------------------------------------------------------------------------- report
def _best(results: list[dict[str, Any]], stage: str) -> dict[str, Any] | None:
    """The fastest first-exam record of a stage over the rounds."""
    found = [r["runs"][0][stage] for r in results if stage in r["runs"][0]]
    return min(found, key=lambda s: s["seconds"]) if found else None


def _gflop(stage: str, record: dict[str, Any], size: str, patch: int,
           windows: float) -> tuple[float, float] | None:
    """(work of the method, work actually done) in GFLOP, for the network stages."""
    if stage == "heatmaps":
        per = PATCH_GFLOP_256 * (patch / 256) ** 2
        return record["patches"] * per, record["forwarded"] * per
    if stage in ("image", "imageheatmaps"):
        per = RESNET_GFLOP_FULL[1 if stage == "image" else 3] * windows
        return record["draws"] * per, record["draws"] * per
    return None


def report(args: argparse.Namespace, info: dict[str, Any],
           baseline: list[dict[str, Any]], ours: dict[str, list[dict[str, Any]]]) -> str:
    config = pipeline_config(args.size, args.tta)
    full = pipeline_config("full", args.tta)
    windows = np.mean([np.prod(config.cc_window) / np.prod(full.cc_window),
                       np.prod(config.mlo_window) / np.prod(full.mlo_window)])
    lines = [
        f"mammocli exam benchmark  ({time.strftime('%Y-%m-%d %H:%M')}, size {args.size}, "
        f"TTA {args.tta}, device {args.device}"
        + (f", heatmaps of {args.heatmap_views} only" if args.heatmap_views else "")
        + (f" on a {args.heatmap_grid}x{args.heatmap_grid}-patch tissue region"
           if args.heatmap_grid else "") + ")",
        f"machine: {info['cpu']}, {info['cores']} cores, torch threads {info['torch_threads']}, "
        f"device {info['device']}, "
        f"ISA {' '.join(info['isa'])}; load average at start "
        f"{' '.join(f'{x:.1f}' for x in info['load_average'])}",
        f"torch {info['torch']}, Python {info['python']}; measured matmul "
        f"{info['matmul_fp32_gflops']:.0f} GFLOP/s fp32, {info['matmul_bf16_gflops']:.0f} "
        f"GFLOP/s bf16",
    ]
    ref = baseline[0] if baseline else None
    if ref:
        shapes = ref["outputs"]["crop_shapes"]
        lines.append("crops: " + ", ".join(f"{v} {h}x{w}" for v, (h, w) in shapes.items()))
        lines.append("baseline: separate process, default glibc allocator (no mallopt), "
                     "fp32 NCHW, torch.cat DenseNet, float64 patches cut one by one, batch "
                     f"{config.heatmap_batch_size}, TTA windows one at a time")
    lines.append(f"best of {args.rounds} round(s), each implementation in its own process, "
                 "interleaved; mammocli tunes the allocator at start-up as the CLI does")
    lines.append("")
    header = (f"{'stage':<20} {'impl':<16} {'seconds':>9} {'ratio':>7} {'patches/s':>10} "
              f"{'GFLOP/s':>8} {'%fp32mm':>8} {'peak RSS':>9}")
    lines += [header, "-" * len(header)]
    columns = [("baseline fp32", baseline)] + [(f"mammocli {p}", r) for p, r in ours.items()]
    totals: dict[str, float] = {}
    for stage in args.stages.split(","):
        base_rec = _best(baseline, stage) if baseline else None
        for name, results in columns:
            rec = _best(results, stage) if results else None
            if rec is None:
                continue
            secs = rec["seconds"]
            totals[name] = totals.get(name, 0.0) + secs
            ratio = f"{base_rec['seconds'] / secs:6.2f}x" if base_rec else "     -"
            rate = f"{rec['patches'] / secs:10.1f}" if "patches" in rec else f"{'':>10}"
            work = _gflop(stage, rec, args.size, config.patch_size, float(windows))
            gflops = f"{work[1] / secs:8.0f}" if work else f"{'':>8}"
            share = (f"{100 * work[1] / secs / info['matmul_fp32_gflops']:7.0f}%"
                     if work else f"{'':>8}")
            lines.append(f"{STAGE_NAMES[stage]:<20} {name:<16} {secs:9.2f} {ratio:>7} {rate} "
                         f"{gflops} {share} {rec['peak_rss'] / 2**30:8.2f}G"
                         + (f"  GPU {rec['peak_gpu'] / 2**30:.2f}G" if "peak_gpu" in rec else ""))
    lines.append("-" * len(header))
    base_total = totals.get("baseline fp32")
    for name, total in totals.items():
        ratio = f"{base_total / total:6.2f}x" if base_total else "     -"
        lines.append(f"{'total':<20} {name:<16} {total:9.2f} {ratio:>7}")
    lines.append("")
    lines.append("patches/s counts every patch position; GFLOP/s is the work actually run "
                 f"(background patches share one forward pass in mammocli; {PATCH_GFLOP_256} "
                 "GFLOP per 256-px patch, ResNet-22 29.6/33.6 GFLOP per full window), and "
                 "%fp32mm compares it with the measured fp32 matmul rate.")
    for precision, results in ours.items():
        first = results[0]
        heat = first["runs"][0].get("heatmaps")
        if heat:
            lines.append(f"mammocli {precision}: {heat['forwarded']} of {heat['patches']} patches "
                         "forwarded (the rest are background duplicates)")
        if len(first["runs"]) > 1:
            rss = ", ".join(f"{r['rss_after_exam'] / 2**30:.2f}G" for r in first["runs"])
            peaks = ", ".join(f"{max(s['peak_rss'] for k, s in r.items() if isinstance(s, dict)) / 2**30:.2f}G"  # noqa: E501
                              for r in first["runs"])
            secs = ", ".join(f"{sum(s['seconds'] for s in r.values() if isinstance(s, dict)):.1f}"
                             for r in first["runs"])
            lines.append(f"mammocli {precision}, {len(first['runs'])} exams in one process: "
                         f"RSS after each {rss}; peak per exam {peaks}; seconds {secs}")
        if ref:
            lines.append(f"mammocli {precision} vs baseline: " + _deviation(ref, first))
    return "\n".join(lines)


def _deviation(ref: dict[str, Any], other: dict[str, Any]) -> str:
    parts = []
    for stage in ("image", "imageheatmaps"):
        key = f"{stage}_labels"
        if key in ref["outputs"] and key in other["outputs"]:
            a, b = ref["outputs"][key], other["outputs"][key]
            parts.append(f"{stage} max |diff| {max(abs(a[k] - b[k]) for k in a):.2g}")
    ha, hb = ref["outputs"].get("heatmaps", {}), other["outputs"].get("heatmaps", {})
    if ha and hb:
        worst = max(float(np.abs(np.asarray(ha[k]) - np.asarray(hb[k])).max()) for k in ha)
        parts.append(f"heatmaps max |diff| {worst:.2g}")
    sa, sb = ref["outputs"].get("heatmap_stats", {}), other["outputs"].get("heatmap_stats", {})
    if sa and sb and not ha:
        worst = max(abs(sa[k] - sb[k]) / max(abs(sa[k]), 1e-12) for k in sa)
        parts.append(f"heatmap sums max rel. diff {worst:.2g}")
    return "; ".join(parts) or "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("small", "full"), default="small")
    parser.add_argument("--precision", default="fp32",
                        help="comma-separated mammocli precisions: fp32, bf16 (tf32: CUDA)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--tta", type=int, default=10)
    parser.add_argument("--exams", type=int, default=1,
                        help="mammocli runs this many exams in one process (memory growth)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--heatmap-grid", type=int, default=0,
                        help="time the heatmap stage on an N x N-patch tissue region of each "
                        "--heatmap-views image instead of the whole image (default: whole)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in every process (default: torch's choice). On a "
                        "machine shared with other jobs 1 thread avoids OpenMP barrier stalls")
    parser.add_argument("--heatmap-views", default=None,
                        help="only these views (e.g. L-CC) through the patch network; the "
                        "others get stand-in heatmaps (default: all; L-CC with --size small)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the synthetic exam and weights here (default: a temp dir)")
    parser.add_argument("--output", type=Path, default=None, help="also write the table here")
    parser.add_argument("--role", choices=("baseline", "mammocli"), help=argparse.SUPPRESS)
    parser.add_argument("--exam", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.heatmap_views is None:  # the smoke run stays under a minute
        args.heatmap_views = "L-CC" if args.size == "small" and not args.role else ""
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.role:
        random.seed(0)
        args.result.write_text(json.dumps(worker(args)))
        return

    info = machine(args.device)
    with tempfile.TemporaryDirectory(prefix="mammocli-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        exam, weights = build_inputs(workdir, args.size)
        baseline: list[dict[str, Any]] = []
        ours: dict[str, list[dict[str, Any]]] = {p: [] for p in args.precision.split(",")}
        for round_ in range(args.rounds):
            if not args.skip_baseline:
                baseline.append(spawn(args, "baseline", "fp32", 1, exam, weights,
                                      workdir / f"baseline{round_}.json"))
            for precision in ours:
                ours[precision].append(spawn(args, "mammocli", precision,
                                             args.exams if round_ == 0 else 1, exam, weights,
                                             workdir / f"{precision}{round_}.json"))
    text = report(args, info, baseline, ours)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
