"""Every size, stride and count of the pipeline in one typed object. Defaults are the paper's.

Tests run the very same code with small values (see `PipelineConfig.small`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .views import Angle
from .vocabulary import FlipMode, RngMode

__all__ = ["FlipMode", "PipelineConfig", "RngMode"]  # the enums live in vocabulary


@dataclass(frozen=True)
class PipelineConfig:
    # Network input windows (H, W) per view angle (SPEC 0).
    cc_window: tuple[int, int] = (2677, 1942)
    mlo_window: tuple[int, int] = (2974, 1748)
    # Stage 1: morphological opening radius and buffers (SPEC 1).
    crop_iterations: int = 100
    crop_buffer: int = 50
    # Stage 3: patch classifier (SPEC 5).
    patch_size: int = 256
    patch_stride: int = 70
    heatmap_batch_size: int = 100
    # Stage 4: augmentation window noise (SPEC 4) and test-time augmentation.
    max_crop_noise: tuple[int, int] = (100, 100)
    max_crop_size_noise: int = 100
    tta: int = 10
    classifier_batch_size: int = 2
    seed: int = 0
    rng_mode: RngMode = RngMode.EXAM

    def window(self, angle: Angle) -> tuple[int, int]:
        return self.cc_window if angle is Angle.CC else self.mlo_window

    def with_(self, **changes: object) -> PipelineConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def small(cls, **changes: object) -> PipelineConfig:
        """A scaled-down pipeline for tests and quick demos on small synthetic images."""
        base = cls(
            cc_window=(268, 194),
            mlo_window=(297, 175),
            crop_iterations=10,
            crop_buffer=5,
            patch_size=64,
            patch_stride=32,
            heatmap_batch_size=32,
            max_crop_noise=(10, 10),
            max_crop_size_noise=10,
        )
        return replace(base, **changes)  # type: ignore[arg-type]
