"""Stage 2: the optimal centre of the network window in the cropped image (SPEC section 2)."""

from __future__ import annotations

import numpy as np

from ..views import Angle
from .patches import box_sums, integral_image


def best_center(image: np.ndarray, angle: Angle, rightmost_points: tuple[tuple[int, int], int],
                bottommost_points: tuple[int, tuple[int, int]],
                window: tuple[int, int]) -> tuple[int, int]:
    """`image`: cropped, canonical orientation. May return a centre outside the image."""
    height, width = image.shape
    com = (height // 2, width // 2)
    half = (window[0] // 2, window[1] // 2)
    rem = (window[0] - half[0], window[1] - half[1])
    rightmost_x = rightmost_points[1]
    if angle is Angle.MLO:
        # Pinned to the nipple column and the lowest tissue row near the nipple side.
        bottommost_y = bottommost_points[0]
        rows = np.flatnonzero((image[:, -window[1]:] > 0).any(axis=1))
        if rows.size:
            bottommost_y = min(int(rows[-1]), bottommost_y)
        return (bottommost_y - half[0] - 1, rightmost_x - half[1] - 1)

    # CC: x fixed by the nipple column; y is the position covering the most tissue.
    lo_y, hi_y = half[0], height - rem[0]
    if lo_y >= hi_y:
        lo_y = hi_y = com[0]
    cx = rightmost_x - half[1] - 1
    ys = np.arange(lo_y, hi_y + 1)
    if ys.size == 1:
        return (int(ys[0]), cx)
    scores = _window_tissue_counts(image > 0, ys, cx, half, rem)
    best = np.flatnonzero(scores == scores.max())
    if best.size > 1:
        dist = (ys[best] - com[0]) ** 2 + (cx - com[1]) ** 2
        best = best[[int(np.argmin(dist))]]  # first in enumeration order on ties
    return (int(ys[best[0]]), cx)


def _window_tissue_counts(mask: np.ndarray, ys: np.ndarray, cx: int, half: tuple[int, int],
                          rem: tuple[int, int]) -> np.ndarray:
    """Non-zero pixel count of the window around (y, cx) for every y, via an integral image.

    A window sticking out at the top/left is shifted inside (far edge extended by the overhang);
    one sticking out at the bottom/right is clipped.
    """
    height, width = mask.shape
    integral = integral_image(mask)

    def span(center: np.ndarray, h: int, r: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        start = center - h
        overhang = np.maximum(-start, 0)
        end = np.minimum(center + r + overhang, size)
        return np.maximum(start, 0), end

    y0, y1 = span(ys, half[0], rem[0], height)
    x0, x1 = span(np.array([cx]), half[1], rem[1], width)
    x0, x1 = x0[0], x1[0]
    return box_sums(integral, y0, x0, y1, x1)
