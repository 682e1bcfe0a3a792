"""Device utilisation in a run's summary (issue 16): CPU busy fraction, and on CUDA the GPU
busy fraction and peak memory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mammocli.api import ModelRequest, RunOptions, RunReport, load_pipeline_config, predict_many
from mammocli.cli.predict import throughput_line
from mammocli.inference.utilisation import Utilisation, UtilisationMeter, utilisation_text
from mammocli.io.discover import discover
from mammocli.outputs.progress import ProgressLog
from mammocli.outputs.sinks import JsonFileSink, Outputs, plan_exams
from mammocli.synthetic.phantoms import write_exam
from mammocli.vocabulary import Variant
from mammocli.weights.overrides import weights_locator


def _run(tmp_path: Path, random_weights: Path, small_pipeline: Path, device: str) -> RunReport:
    root = tmp_path / "archive"
    write_exam(root / "e0", shape=(400, 300), seed=0)
    planned, _ = plan_exams(discover(root).exams, root)
    outputs = Outputs.open([JsonFileSink(tmp_path / "out.jsonl", False, overwrite=True,
                                         resume=False)], planned)
    request = ModelRequest(variants=(Variant.IMAGE_ONLY,),
                           locate=weights_locator(random_weights, {}, progress=False))
    options = RunOptions(config=load_pipeline_config(small_pipeline, tta=0), device=device)
    return predict_many(planned, request, options, outputs)


def test_a_cpu_run_reports_its_cpu_utilisation(tmp_path: Path, random_weights: Path,
                                               small_pipeline: Path) -> None:
    report = _run(tmp_path, random_weights, small_pipeline, "cpu")
    u = report.utilisation
    assert u is not None
    assert 0.0 < u.cpu <= 1.0 and u.cpu_s > 0 and u.cpus >= 1
    # the CPU time is the run's own: at most wall x CPUs
    assert u.cpu_s <= report.elapsed_s * u.cpus * 1.05 + 0.05
    assert u.gpu is None and u.gpu_peak_memory_bytes is None  # no CUDA device used
    line = throughput_line(report)
    assert f"CPU {u.cpu:.0%} of {u.cpus}" in line and "GPU" not in line


def test_cpu_fraction_follows_the_work_done() -> None:
    meter = UtilisationMeter()
    t = time.process_time()
    while time.process_time() - t < 0.3:  # busy: 0.3 CPU seconds (longer on a loaded machine)
        pass
    busy = meter.finish(["cpu"], {})
    idle_meter = UtilisationMeter()
    time.sleep(0.3)  # idle: close to no CPU time
    idle = idle_meter.finish(["cpu"], {})
    assert busy.cpu_s >= 0.3 and idle.cpu_s < 0.1
    assert 0.0 <= idle.cpu < busy.cpu <= 1.0


def test_without_nvml_the_gpu_busy_fraction_is_the_compute_time_share() -> None:
    meter = UtilisationMeter()
    meter.sampler = None  # as without pynvml
    u = meter.finish(["cuda:0", "cuda:1"], {"prepare": 9.0, "heatmaps": 1.0, "classify": 2.0},
                     elapsed_s=3.0)
    assert u.gpu == pytest.approx(0.5) and u.gpu_from == "compute time"  # 3 s of 2 x 3 s
    assert "GPU 50% busy (compute time)" in utilisation_text(u)


def test_the_progress_summary_line_carries_the_utilisation(tmp_path: Path) -> None:
    log = ProgressLog(tmp_path / "p.jsonl", 1)
    log.exam("e0", "ok")
    log.close({"classify": 1.0}, 2.0, utilisation=Utilisation(
        cpu=0.25, cpu_s=1.0, cpus=2, gpu=0.4, gpu_from="nvml", gpu_peak_memory_bytes=2**30))
    summary = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[-1])
    assert summary["event"] == "summary"
    assert summary["utilisation"] == {"cpu": 0.25, "cpu_s": 1.0, "cpus": 2, "gpu": 0.4,
                                      "gpu_from": "nvml", "gpu_peak_memory_bytes": 2**30}


@pytest.mark.gpu
def test_a_cuda_run_reports_gpu_busy_and_peak_memory(tmp_path: Path, random_weights: Path,
                                                     small_pipeline: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    report = _run(tmp_path, random_weights, small_pipeline, "cuda")
    u = report.utilisation
    assert u is not None and u.gpu is not None
    assert 0.0 <= u.gpu <= 1.0 and u.gpu_from in {"nvml", "compute time"}
    assert u.gpu_peak_memory_bytes is not None and u.gpu_peak_memory_bytes > 0
    assert "GPU" in utilisation_text(u) and "peak memory" in utilisation_text(u)
