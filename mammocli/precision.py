"""Numeric precision of a run. `fp32` is exact (the fidelity tests guard it); `bf16` and `tf32`
are opt-in approximations whose deviation from fp32 is bounded by tests/test_precision.py."""

from __future__ import annotations

from enum import Enum

import torch

from .errors import ConfigError


class Precision(str, Enum):
    FP32 = "fp32"
    BF16 = "bf16"  # networks in bfloat16; inputs standardised in fp32 first, outputs back in fp32
    TF32 = "tf32"  # CUDA only: fp32 tensors, TensorFloat-32 matmuls and convolutions


def configure(precision: Precision | str, device: torch.device) -> torch.dtype:
    """Set the process-wide backend flags for `precision` on `device`; returns the dtype the
    networks run in."""
    precision = Precision(precision)
    if device.type == "cuda":
        # Explicit both ways: TF32 must never be on by accident in the exact mode.
        tf32 = precision is Precision.TF32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    elif precision is Precision.TF32:
        raise ConfigError(f"--precision tf32 needs a CUDA device, not {device.type}",
                          hint="use --precision bf16 for a faster approximate mode on CPU")
    return torch.bfloat16 if precision is Precision.BF16 else torch.float32
