"""The two random generators of the authors' pipeline, passed down explicitly.

Python's `random` draws the heatmap stride lists; numpy's RandomState (MT19937) draws the
test-time-augmentation windows, one generator per model variant (the authors ran each variant as
its own process, each seeded). By default every exam starts from the seed; `RngMode.RUN` keeps
one stream across the exams of a run, as the authors' scripts do.
"""

from __future__ import annotations

import random

import numpy as np

from ..config import RngMode


class ExamRandomness:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.strides = random.Random(seed)
        self._tta: dict[str, np.random.RandomState] = {}

    def tta(self, variant: str) -> np.random.RandomState:
        if variant not in self._tta:
            self._tta[variant] = np.random.RandomState(self.seed)
        return self._tta[variant]


class RunRandomness:
    """Hands each exam its generators according to the RNG mode."""

    def __init__(self, seed: int, mode: RngMode) -> None:
        self.seed = seed
        self.mode = mode
        self._shared = ExamRandomness(seed)

    def for_exam(self) -> ExamRandomness:
        return self._shared if self.mode is RngMode.RUN else ExamRandomness(self.seed)
