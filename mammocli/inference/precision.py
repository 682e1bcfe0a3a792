"""Numeric precision of a run. `fp32` is exact (the fidelity tests guard it); `bf16` and `tf32`
are opt-in approximations whose deviation from fp32 is bounded by tests/test_precision.py.

What each needs: fp32 runs anywhere. bf16 runs on any CPU torch supports (fast where the CPU
has AVX512-BF16 or AMX; emulated, and often slower than fp32, on AVX2-only CPUs) and on CUDA.
tf32 is CUDA only (Ampere or later; elsewhere it computes fp32)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..vocabulary import Precision

if TYPE_CHECKING:  # torch is imported when a run starts, not when the CLI parses options
    import torch


def cpu_capability() -> str:
    """The vector instruction set torch's CPU kernels use here (e.g. "AVX2", "AVX512")."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


@functools.cache
def cpu_bf16_problem() -> str | None:
    """None when bfloat16 convolutions and matmuls run on this CPU, else why not. Probed once
    with a tiny call of each: what a kernel supports depends on the CPU and on the oneDNN and
    ATen limits of this process (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY)."""
    import torch
    import torch.nn.functional as F

    x = torch.ones((1, 4, 5, 5), dtype=torch.bfloat16).contiguous(
        memory_format=torch.channels_last)
    w = torch.ones((4, 4, 3, 3), dtype=torch.bfloat16).contiguous(
        memory_format=torch.channels_last)
    try:
        conv = F.conv2d(x, w, torch.zeros(4, dtype=torch.bfloat16), 1, 1)
        linear = F.linear(torch.ones((2, 8), dtype=torch.bfloat16),
                          torch.ones((3, 8), dtype=torch.bfloat16))
    except (RuntimeError, NotImplementedError) as exc:
        # Name what the kernel asks for (torch's message lists the CPU features), never more.
        return f"{str(exc).splitlines()[0][:200]} (torch CPU capability: {cpu_capability()})"
    if conv[0, 0, 2, 2].item() != 36.0 or linear[0, 0].item() != 8.0:
        return f"bfloat16 kernels give wrong results (torch CPU capability: {cpu_capability()})"
    return None


def configure(precision: Precision | str, device: torch.device) -> torch.dtype:
    """Set the process-wide backend flags for `precision` on `device`; returns the dtype the
    networks run in. A precision this device cannot run is a `ConfigError` saying why."""
    import torch

    precision = Precision(precision)
    if device.type == "cuda":
        # Explicit both ways: TF32 must never be on by accident in the exact mode.
        tf32 = precision is Precision.TF32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    elif precision is Precision.TF32:
        if device.type == "cpu" and cpu_bf16_problem() is not None:
            hint = "use the default --precision fp32: bf16 cannot run on this CPU either"
        elif device.type == "cpu":
            hint = "use --precision bf16 for a faster approximate mode on CPU"
        else:
            hint = "use the default --precision fp32"
        raise ConfigError(f"--precision tf32 needs a CUDA device, not {device.type}", hint=hint)
    elif precision is Precision.BF16 and device.type == "cpu":
        problem = cpu_bf16_problem()
        if problem is not None:
            raise ConfigError(f"--precision bf16 cannot run on this CPU: {problem}",
                              hint="use the default --precision fp32, or a CPU with AVX-512 "
                                   "(avx512bw, avx512vl, avx512dq) or a CUDA device")
    return torch.bfloat16 if precision is Precision.BF16 else torch.float32
