"""Patch geometry shared by the heatmap engine, the best-centre search and patch training: the
one integral image (pixel counts over any box in O(1)) and the one pad-to-patch."""

from __future__ import annotations

import numpy as np


def integral_image(mask: np.ndarray) -> np.ndarray:
    """(H+1, W+1) int64 table: [y, x] holds the sum of mask[:y, :x]."""
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = mask.cumsum(axis=0).cumsum(axis=1)
    return integral


def box_sums(integral: np.ndarray, y0: np.ndarray | int, x0: np.ndarray | int,
             y1: np.ndarray | int, x1: np.ndarray | int) -> np.ndarray:
    """Sums over the boxes [y0, y1) x [x0, x1) (arrays broadcast)."""
    out: np.ndarray = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return out


def patch_sums(integral: np.ndarray, patch: int) -> np.ndarray:
    """Sums over every patch x patch box, indexed by its top-left corner."""
    p = patch
    out: np.ndarray = integral[p:, p:] - integral[:-p, p:] - integral[p:, :-p] + integral[:-p, :-p]
    return out


def pad_to_patch(image: np.ndarray, patch: int) -> np.ndarray:
    """An image smaller than a patch, padded with background (0) at the bottom/right to at least
    patch x patch; a large enough image is returned as it is."""
    height, width = image.shape
    if height >= patch and width >= patch:
        return image
    padded = np.zeros((max(height, patch), max(width, patch)), image.dtype)
    padded[:height, :width] = image
    return padded
