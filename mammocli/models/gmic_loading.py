"""Loading the official GMIC files `sample_model_<i>.p` (gmic/SPEC.md 10.2, 11).

The authors load non-strictly, so a missing key would silently keep a random layer. We read with
`torch.load(weights_only=True)` (no pickle code runs), are strict on every key of our module, and
ignore exactly the one extra key the real files carry; anything else is a WeightsError.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import WeightsError
from .gmic import GMIC, MEMBERS, PERCENT_T
from .loading import load_strict, read_state_dict

# In the real files, not used by the released model (its shape is unknown, SPEC 11.2).
EXTRA_KEY = "shared_rep_filter.weight"


def member_file_name(member: int) -> str:
    """The official file name of ensemble member `member` (1..5)."""
    check_member(member)
    return f"sample_model_{member}.p"


def check_member(member: int) -> None:
    if member not in PERCENT_T:
        raise WeightsError(f"GMIC model index {member} does not exist",
                           hint=f"the official members are {', '.join(map(str, MEMBERS))}")


def gmic_from_state_dict(state: Mapping[str, torch.Tensor], member: int, name: str) -> GMIC:
    """A GMIC module in eval mode with `state` loaded strictly (except EXTRA_KEY)."""
    check_member(member)
    own = {k: v for k, v in state.items() if k != EXTRA_KEY}
    return load_strict(GMIC(PERCENT_T[member]), own, name)


def load_gmic(path: Path, member: int) -> GMIC:
    """Read one official (or exported) GMIC file for ensemble member `member` (1..5; it sets
    the top-t fraction of y_global)."""
    path = Path(path)
    return gmic_from_state_dict(read_state_dict(path), member, path.name)
