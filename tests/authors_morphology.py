"""The authors' stage-1 morphology, written independently with scipy (not their code): binary
erosion `iterations` times with a 3x3 cross, keep the largest connected component, dilate as
many times. The yardstick `largest_tissue_mask` (distance transforms on bounding boxes) is
tested against in test_crop.py, and the straightforward baseline of benchmarks/bench_exam.py.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def iterative_tissue_mask(image: np.ndarray, iterations: int) -> np.ndarray | None:
    """Erode, keep the largest component (the first in raster order among equals), dilate."""
    eroded = ndimage.binary_erosion(image > 0, iterations=iterations)
    labels, count = ndimage.label(eroded)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    largest = labels == int(np.argmax(sizes))
    return ndimage.binary_dilation(largest, iterations=iterations)
