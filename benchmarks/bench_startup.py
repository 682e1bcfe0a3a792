"""Where a run's start-up and first exam go (issue 18: "on the small demo the first exam took
47 s and the next two 1.7 s and 2.5 s").

Set-up (once, in this process): three synthetic exams (400 x 300 px), random weights in the
official formats (`mammocli.synthetic.phantoms.write_random_weights`), and a weights cache
that holds them, registered by their git blob SHA-1 in a registry manifest (MAMMOCLI_REGISTRY),
so the cache path verifies them as it verifies the official files.

Then, each in a fresh subprocess (`--rounds N` repeats them, the best round is kept):
- `import`: `import mammocli.cli.app`, and what it pulled in (is torch imported?);
- `steps`: the predict path step by step: CLI import, torch import, `tune_allocator` and
  threads, locating the weights in the cache (verification = hashing), loading the models
  (incl. the `weights_used` SHA-256 of each file for the result), then exams 1, 2 and 3 with
  their stages (prepare, heatmaps, classify) and the same first exam again, for the warm-up;
- `cli`: `mammocli predict ROOT --pipeline-config examples/small_pipeline.yaml -o FILE`
  through the cache, as a user runs it: the process' wall and CPU time and each exam's
  `duration_s` from the results.

CPU seconds (user + system of the process) are robust under load; wall time is printed too.

    python benchmarks/bench_startup.py                # ~1-2 min on 2 cores
    python benchmarks/bench_startup.py --rounds 3 --json startup.json
    python benchmarks/bench_startup.py --code ../main  # another checkout (before / after)

Before/after on a loaded machine: run both back to back (`--code OLD`, then this checkout),
alternating with --rounds; the load moves under you (`uptime` is printed with each result).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "examples" / "small_pipeline.yaml"
CODE = ROOT  # the mammocli checkout the subprocesses import (--code)
EXAMS = 3


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Clock:
    """Wall and CPU seconds of consecutive steps."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, float]] = {}
        self.wall, self.cpu = time.perf_counter(), _cpu()

    def step(self, name: str) -> None:
        wall, cpu = time.perf_counter(), _cpu()
        self.steps[name] = {"wall": wall - self.wall, "cpu": cpu - self.cpu}
        self.wall, self.cpu = wall, cpu


def _worker_import() -> dict[str, Any]:
    clock = _Clock()
    import mammocli.cli.app  # noqa: F401

    clock.step("import mammocli.cli.app")
    return {"steps": clock.steps, "torch_imported": "torch" in sys.modules}


def _worker_steps(root: Path) -> dict[str, Any]:
    clock = _Clock()
    import mammocli.cli.app  # noqa: F401

    clock.step("import mammocli.cli.app")
    from mammocli.inference.devices import configure_threads, tune_allocator

    tune_allocator()
    clock.step("tune_allocator")
    configure_threads(0)  # imports torch, as the CLI does (the OpenMP policy is set before)
    clock.step("configure_threads + import torch")
    import torch

    from mammocli.models.densenet_inference import fused_conv_relu_available

    fused_conv_relu_available(torch.device("cpu"), torch.float32)
    clock.step("probe oneDNN fused conv+ReLU")
    from mammocli.api import load_pipeline_config
    from mammocli.inference.randomness import RunRandomness
    from mammocli.io.discover import discover
    from mammocli.parallel import PredictorSpec
    from mammocli.vocabulary import Family, ModelKind, Variant
    from mammocli.weights.overrides import weights_locator

    config = load_pipeline_config(SMALL, tta=10, seed=0)
    exams = discover(root).exams
    clock.step("config + discover")
    spec = PredictorSpec.resolve(Family.DMV_CNN, ModelKind.VIEW_WISE,
                                 (Variant.IMAGE_ONLY, Variant.IMAGE_AND_HEATMAPS),
                                 weights_locator(None, progress=False), config)
    clock.step("locate weights in the cache (verify)")
    predictor = spec.build(torch.device("cpu"))
    clock.step("load models (+ SHA-256 for the result)")
    stages: dict[str, dict[str, float]] = {}
    randomness = RunRandomness(config.seed, config.rng_mode)
    for i, exam in enumerate([*exams, exams[0]]):
        out = predictor.run(exam, randomness.for_exam())
        name = f"exam {i + 1}" if i < len(exams) else "exam 1 again"
        clock.step(name)
        stages[name] = dict(out.timings)
    return {"steps": clock.steps, "stages": stages,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def _run_worker(kind: str, root: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--worker", kind, "--root", str(root)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _run_cli(root: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mammocli", "predict", str(root),
                           "--pipeline-config", str(SMALL), "-o", str(out), "--quiet"],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"mammocli predict failed:\n{done.stderr[-3000:]}")
    durations = [json.loads(line)["duration_s"] for line in out.read_text().splitlines()]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "exam_duration_s": durations}


def _setup(work: Path) -> dict[str, str]:
    """Exams, random weights in a cache, and the environment that makes mammocli use them."""
    from mammocli.hashing import git_blob_sha1
    from mammocli.synthetic.phantoms import write_exam, write_random_weights

    for i in range(EXAMS):
        write_exam(work / "exams" / f"exam_{i}", shape=(400, 300), seed=i)
    cache = work / "cache"
    weights = write_random_weights(cache / "weights", seed=0)
    registry = json.loads((ROOT / "mammocli" / "weights" / "registry.json").read_text())
    registry["weights"] = [
        {**entry, "git_sha1": git_blob_sha1(weights / entry["name"])}
        for entry in registry["weights"] if (weights / entry["name"]).is_file()]
    (work / "registry.json").write_text(json.dumps(registry))
    env = dict(os.environ, MAMMOCLI_CACHE_DIR=str(cache), MAMMOCLI_OFFLINE="1",
               MAMMOCLI_REGISTRY=str(work / "registry.json"))
    env["PYTHONPATH"] = str(CODE)
    return env


def _best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per step the round with the least CPU time."""
    steps: dict[str, dict[str, float]] = {}
    for result in rounds:
        for name, value in result["steps"].items():
            if name not in steps or value["cpu"] < steps[name]["cpu"]:
                steps[name] = value
    return {**rounds[0], "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--code", type=Path, default=ROOT,
                        help="the mammocli checkout to measure (default: this one)")
    parser.add_argument("--worker", choices=("import", "steps"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = _worker_import() if args.worker == "import" else _worker_steps(args.root)
        print(json.dumps(result))
        return
    global CODE
    CODE = args.code.resolve()
    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
        work = Path(tmp)
        env = _setup(work)
        imports = _best([_run_worker("import", work, env) for _ in range(args.rounds)])
        steps_rounds = [_run_worker("steps", work / "exams", env) for _ in range(args.rounds)]
        steps = _best(steps_rounds)
        cli = min((_run_cli(work / "exams", work / "out.jsonl", env)
                   for _ in range(args.rounds)), key=lambda r: r["cpu"])
    print(f"# {CODE}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}; best of {args.rounds} round(s) by CPU time; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'step':44s} {'wall s':>8s} {'cpu s':>8s}")
    for name, value in imports["steps"].items():
        print(f"{name + ' (alone)':44s} {value['wall']:8.2f} {value['cpu']:8.2f}")
    print(f"  torch imported by the CLI import: {imports['torch_imported']}")
    for name, value in steps["steps"].items():
        print(f"{name:44s} {value['wall']:8.2f} {value['cpu']:8.2f}")
        if name in steps["stages"]:
            print("    " + ", ".join(f"{stage} {seconds:.2f}"
                                     for stage, seconds in steps["stages"][name].items()))
    print(f"  OMP_WAIT_POLICY in the process: {steps['omp_wait_policy']}")
    print(f"{'mammocli predict, 3 exams (process)':44s} {cli['wall']:8.2f} {cli['cpu']:8.2f}")
    print("  exam duration_s: " + ", ".join(f"{d:.2f}" for d in cli["exam_duration_s"]))
    if args.json:
        args.json.write_text(json.dumps({"import": imports, "steps": steps_rounds, "cli": cli},
                                        indent=1))


if __name__ == "__main__":
    main()
