"""mammocli: the NYU breast-cancer screening model (Wu et al. 2019) as a command-line tool and
a Python library.

    import mammocli
    records = mammocli.predict("exams/", weights_dir="weights/", device="cpu")

`predict` returns one `PredictionResult` (or `ExamFailure`) per exam; `mammocli.api` has the
batch entry points behind the CLI (`predict_many`, `export_many`) and their option types.

Research software. Not a medical device; not for clinical decisions.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Loaded on first use: `import mammocli` (and the CLI's start) stays free of torch.
_API = {"predict", "predict_many", "export_many", "ModelRequest", "RunOptions", "RunReport"}
_SCHEMA = {"PredictionResult", "ExamFailure"}
_VOCABULARY = {"Family", "ModelKind", "Variant", "FlipMode", "RngMode", "Precision", "Export",
               "SCHEMA_VERSION"}

if TYPE_CHECKING:
    from .api import (
        ModelRequest,
        RunOptions,
        RunReport,
        export_many,
        predict,
        predict_many,
    )
    from .outputs.schema import ExamFailure, PredictionResult
    from .vocabulary import (
        SCHEMA_VERSION,
        Export,
        Family,
        FlipMode,
        ModelKind,
        Precision,
        RngMode,
        Variant,
    )


def __getattr__(name: str) -> Any:
    # By name, so that every module importing `__version__` from here does not (for the layering
    # contract, or at run time) depend on the API and what it imports.
    module = ("api" if name in _API else "outputs.schema" if name in _SCHEMA
              else "vocabulary" if name in _VOCABULARY else None)
    if module is not None:
        return getattr(import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module 'mammocli' has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION", "ExamFailure", "Export", "Family", "FlipMode", "ModelKind", "ModelRequest",
    "Precision", "PredictionResult", "RngMode", "RunOptions", "RunReport", "Variant",
    "__version__", "export_many", "predict", "predict_many",
]
