"""Process-level speed settings that change no number: the allocator, and device choice."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, DeviceError
from ..reporting import log

if TYPE_CHECKING:  # torch is imported when it is used: the CLI starts without it
    import torch

# glibc mallopt parameters.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_tuned = False
_passive_at_load: float | None = None  # the load average that made OpenMP wait passively


def tune_allocator() -> bool:
    """Keep freed activation memory in the process instead of returning it to the OS after
    every forward pass: glibc otherwise unmaps and page-faults it back on each batch, which
    measured about half of the heatmap stage's time on CPU. Linux/glibc only; a no-op elsewhere."""
    global _tuned
    if _tuned or not sys.platform.startswith("linux"):
        return _tuned
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        ok = all(
            libc.mallopt(param, value) == 1
            for param, value in (
                (_M_MMAP_THRESHOLD, 1 << 30),
                (_M_TRIM_THRESHOLD, (1 << 31) - 1),
                (_M_TOP_PAD, 256 << 20),
            )
        )
    except (OSError, AttributeError):
        return False
    _tuned = ok
    return ok


def available_cpus() -> int:
    """The CPUs this process may run on (a container's cpuset can be smaller than the machine)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def _others_running(samples: int = 5, pause: float = 0.01) -> int | None:
    """Other tasks runnable right now (the most over a few samples), from /proc/loadavg's
    running count minus this process; None where there is no /proc (then the load average
    alone decides)."""
    most = 0
    try:
        for i in range(samples):
            if i:
                time.sleep(pause)
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
            most = max(most, running - 1)
    except (OSError, ValueError, IndexError):
        return None
    return most


def wait_passively_when_busy(load: float | None = None, others: int | None = None) -> bool:
    """On a machine whose CPUs other processes keep busy, make OpenMP threads sleep at
    barriers instead of spinning (OMP_WAIT_POLICY=PASSIVE). A spinning thread burns the CPU the
    thread it waits for needs: on a loaded 2-core machine that turned a 1.5 s small-demo exam
    into 9-80 s at random (benchmarks/bench_startup.py). On a quiet machine spinning is faster
    (about 2x at the demo sizes), so it stays: busy means a 1-minute load average of 1 or more
    and another task running now (a finished earlier run still shows in the average).
    Only works before torch (its OpenMP runtime) is loaded, and never overrides a policy the
    user set. Returns whether it set the policy. Changes no number."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ or available_cpus() < 2:
        return False
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):  # no load average (e.g. Windows)
            return False
    if load < 1.0:
        return False
    if others is None:
        others = _others_running()
    if others is not None and others < 1:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    global _passive_at_load
    _passive_at_load = load  # said by configure_threads, once logging is set up
    return True


def configure_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads: `threads` if given, else at most `available_cpus()`
    (OpenMP threads beyond them stall at every barrier), and the OpenMP wait policy on a busy
    machine (`wait_passively_when_busy`). Returns the count in use."""
    global _passive_at_load
    if threads != 1:  # one thread has no barrier to wait at
        wait_passively_when_busy()
    if _passive_at_load is not None:
        log.info("busy machine (load %.1f, %d CPUs): threads wait passively "
                 "(OMP_WAIT_POLICY=ACTIVE: spin)", _passive_at_load, available_cpus())
        _passive_at_load = None
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    elif available_cpus() < torch.get_num_threads():
        torch.set_num_threads(available_cpus())
    return torch.get_num_threads()


_DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def _check_device_name(requested: str) -> None:
    """A name that is no device at all is a usage error (exit 2), unlike a device this
    machine lacks (DeviceError, exit 5): `gpu` is a typo, not a missing GPU."""
    if requested in ("auto", "cpu", "mps", "cuda"):
        return
    if requested.startswith("cuda:") and requested[5:].isdigit():
        return
    raise ConfigError(f"unknown device {requested!r}", hint=f"use {_DEVICE_NAMES}")


def select_device(requested: str = "auto") -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device that is missing is an error
    (`DeviceError`), a name that is no device a `ConfigError`."""
    requested = requested.strip().lower()
    _check_device_name(requested)
    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if requested == "cpu":
        return torch.device("cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"CUDA was requested but this torch build ({torch.__version__}) has no usable "
                "CUDA device",
                hint="use --device cpu, or install a CUDA build of torch",
            )
        device = torch.device(requested)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{requested}: only {torch.cuda.device_count()} CUDA device(s)")
        return device
    if requested == "mps":
        if not mps_ok:
            raise DeviceError(
                f"MPS was requested but is not available in torch {torch.__version__}",
                hint="use --device cpu")
        return torch.device("mps")
    raise AssertionError(requested)  # _check_device_name admits no other name
