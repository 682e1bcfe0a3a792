"""Which way a stored image faces, and turning it to canonical orientation (breast facing right:
chest wall at the left edge, nipple pointing right)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import FlipMode
from ..views import Side, View


@dataclass(frozen=True)
class Orientation:
    facing: Side  # stored facing direction
    decided_by: str  # "exam" (horizontal_flip), "auto" (tissue side) or "dicom"

    @property
    def needs_flip(self) -> bool:
        return self.facing is Side.LEFT

    @property
    def crop_mode(self) -> str:
        return self.facing.value


def facing_from_flip(view: View, horizontal_flip: FlipMode) -> Side:
    """The authors' rule: NO = L views face right, R views face left; YES = the reverse."""
    left_faces_right = horizontal_flip is FlipMode.NO
    is_left = view.side is Side.LEFT
    return Side.RIGHT if is_left == left_faces_right else Side.LEFT


def facing_from_tissue(pixels: np.ndarray) -> Side:
    """The chest wall is the image edge the tissue touches: compare non-zero pixels in the
    outer tenth of columns on each side."""
    band = max(1, pixels.shape[1] // 10)
    left = np.count_nonzero(pixels[:, :band])
    right = np.count_nonzero(pixels[:, -band:])
    return Side.RIGHT if left >= right else Side.LEFT


def decide_orientation(pixels: np.ndarray, view: View, mode: FlipMode,
                       known_facing: Side | None = None) -> Orientation:
    if mode is FlipMode.AUTO:
        if known_facing is not None:
            return Orientation(known_facing, "dicom")
        return Orientation(facing_from_tissue(pixels), "auto")
    return Orientation(facing_from_flip(view, mode), "exam")


def to_canonical(image: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Mirror left-facing images; an involution, so it also maps results back."""
    return image[:, ::-1] if orientation.needs_flip else image
