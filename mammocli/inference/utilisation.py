"""The device utilisation a run can see (issue 16): CPU, and on CUDA the GPU busy fraction and
the peak device memory.

- CPU: CPU seconds of this process (and of its finished child processes: preparation pools,
  `--devices` workers) over wall seconds x the CPUs the process may use, so 1.0 means every CPU
  was busy for the whole run.
- GPU busy: the mean of `torch.cuda.utilization()` samples (NVML, when `pynvml` /
  nvidia-ml-py is installed) taken twice a second in a daemon thread; without NVML, the time
  inside device compute (the heatmaps and classify stages, which end with the results on the
  CPU) over wall x devices.
- Peak memory: `torch.cuda.max_memory_allocated` of the devices this process used (None for
  `--devices` runs, whose models live in worker processes).

The meter never initialises CUDA itself: a CPU run stays CPU-only.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Utilisation", "UtilisationMeter", "utilisation_text"]

COMPUTE_STAGES = ("heatmaps", "classify")


@dataclass(frozen=True)
class Utilisation:
    cpu: float  # 0..1: CPU seconds / (wall seconds x cpus)
    cpu_s: float  # CPU seconds of the run (this process and its finished children)
    cpus: int  # CPUs the process may use
    gpu: float | None = None  # 0..1: busy fraction of the CUDA devices used; None: no CUDA
    gpu_from: str | None = None  # "nvml" (sampled utilisation) or "compute time" (stages)
    gpu_peak_memory_bytes: int | None = None  # max over the devices this process used

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _torch_cuda() -> Any | None:
    """torch.cuda when torch is already imported and CUDA is usable (never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return torch.cuda if torch.cuda.is_available() else None
    except Exception:  # a broken driver: no GPU figures, never a failed run
        return None


class _NvmlSampler(threading.Thread):
    """Samples `torch.cuda.utilization(i)` of every visible device until stopped."""

    def __init__(self, cuda: Any, interval_s: float) -> None:
        super().__init__(name="mammocli-gpu-sampler", daemon=True)
        self.cuda = cuda
        self.interval_s = interval_s
        self.samples: dict[int, list[float]] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        for index in range(self.cuda.device_count()):
            self.samples.setdefault(index, []).append(self.cuda.utilization(index) / 100.0)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # NVML went away: keep what was sampled
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2.0)


class UtilisationMeter:
    """Start before a run, `finish` after it: what the run used of the CPUs and devices."""

    def __init__(self, *, interval_s: float = 0.5) -> None:
        self.started = time.perf_counter()
        self.cpu_started = _cpu_seconds()
        self.cuda = _torch_cuda()
        self.sampler: _NvmlSampler | None = None
        if self.cuda is None:
            return
        if self.cuda.is_initialized():  # peaks of earlier runs in this process do not count
            for index in range(self.cuda.device_count()):
                self.cuda.reset_peak_memory_stats(index)
        try:
            sampler = _NvmlSampler(self.cuda, interval_s)
            sampler.sample()  # fails here without pynvml / NVML: the fallback is used
        except Exception:
            return
        sampler.samples.clear()
        sampler.start()
        self.sampler = sampler

    def finish(self, devices: Iterable[str], stages: Mapping[str, float],
               elapsed_s: float | None = None) -> Utilisation:
        """`devices`: the devices the run's results name ("cpu", "cuda:1", ...)."""
        wall = elapsed_s if elapsed_s is not None else time.perf_counter() - self.started
        cpu_s = max(_cpu_seconds() - self.cpu_started, 0.0)
        cpus = usable_cpus()
        cpu = min(cpu_s / (wall * cpus), 1.0) if wall > 0 else 0.0
        if self.sampler is not None:
            self.sampler.stop()
        cuda = sorted({i for i in map(_cuda_index, devices) if i is not None})
        if not cuda:
            return Utilisation(cpu=cpu, cpu_s=round(cpu_s, 3), cpus=cpus)
        gpu, source = self._gpu_busy(cuda, stages, wall)
        return Utilisation(cpu=cpu, cpu_s=round(cpu_s, 3), cpus=cpus, gpu=gpu, gpu_from=source,
                           gpu_peak_memory_bytes=self._peak_memory(cuda))

    def _gpu_busy(self, cuda: list[int], stages: Mapping[str, float],
                  wall: float) -> tuple[float | None, str | None]:
        if self.sampler is not None:
            sampled = [s for i in cuda for s in self.sampler.samples.get(i, [])]
            if sampled:
                return sum(sampled) / len(sampled), "nvml"
        if wall <= 0:
            return None, None
        compute = sum(stages.get(s, 0.0) for s in COMPUTE_STAGES)
        return min(compute / (wall * len(cuda)), 1.0), "compute time"

    def _peak_memory(self, cuda: list[int]) -> int | None:
        if self.cuda is None or not self.cuda.is_initialized():
            return None  # the models ran in worker processes (--devices)
        try:
            return max(int(self.cuda.max_memory_allocated(i)) for i in cuda)
        except Exception:
            return None


def _cuda_index(device: str) -> int | None:
    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    return None


def utilisation_text(u: Utilisation) -> str:
    """One short line for the run's summary: 'CPU 63% of 2; GPU 41% busy (nvml), peak 1.2 GiB'."""
    text = f"CPU {u.cpu:.0%} of {u.cpus}"
    if u.gpu is not None:
        text += f"; GPU {u.gpu:.0%} busy ({u.gpu_from})"
    if u.gpu_peak_memory_bytes is not None:
        text += f", peak memory {u.gpu_peak_memory_bytes / 2**30:.2f} GiB"
    return text
