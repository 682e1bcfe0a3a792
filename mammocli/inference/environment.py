"""What this machine and installation offer the pipeline: versions, devices, what the CPU runs
at each precision, the cache and settings, and the weights' local status. Downloads nothing;
heavy modules (torch) are imported on call, so the CLI starts fast."""

from __future__ import annotations

import platform

from .. import __version__
from ..settings import load_settings


def environment_report() -> dict[str, object]:
    import numpy
    import pydicom
    import torch

    settings = load_settings()
    mps = getattr(torch.backends, "mps", None)
    return {
        "mammocli": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "mps_available": bool(mps and mps.is_available()),
        "cpu_threads": torch.get_num_threads(),
        "cpu": cpu_report(),
        "numpy": numpy.__version__,
        "pydicom": pydicom.__version__,
        "cache_dir": str(settings.cache_dir),
        "offline": settings.offline,
        "weights_url": settings.weights_url,
        "weights": weights_report(),
    }


def cpu_report() -> dict[str, object]:
    """What the CPU offers each precision (see README "Options that matter")."""
    import torch

    from ..models.densenet_inference import fused_conv_relu_available
    from .precision import cpu_bf16_problem, cpu_capability

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh
                          if line.startswith(("flags", "Features"))), [])
    except OSError:
        flags = []
    wanted = ("avx2", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "avx_ne_convert")
    problem = cpu_bf16_problem()
    return {
        "capability": cpu_capability(),
        "isa": [f for f in wanted if f in flags],
        "bf16": "runs" if problem is None else problem,
        "bf16_fused_conv": fused_conv_relu_available(torch.device("cpu"), torch.bfloat16),
    }


def weights_report() -> list[dict[str, object]] | dict[str, str]:
    """Cached/verified per official file: local hashing only, never a download."""
    from ..errors import MammocliError
    from ..weights import load_registry, store

    try:
        return [
            {"name": s.name, "cached": s.cached, "verified": s.verified, "path": s.path}
            for s in (store.status(e) for e in load_registry().weights)
        ]
    except MammocliError as exc:  # e.g. a broken MAMMOCLI_REGISTRY: report it, info still works
        return {"error": exc.message}
