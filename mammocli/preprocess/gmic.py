"""GMIC's input: stages 1-2 are the DMV-CNN's with a 2944 x 1920 window for every view; stage 3
takes that window without noise and standardises it in numpy float32 (gmic/SPEC.md 2-3).

The crop and best centre come from `prepare.ExamPreparer(gmic_pipeline_config())`, i.e. our
DMV-CNN code; only the window size differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from ..config import PipelineConfig
from ..models.gmic import WINDOW
from ..views import Angle
from .prepare import PreparedImage
from .window import WindowRecord, sample_window


def gmic_pipeline_config(base: PipelineConfig | None = None) -> PipelineConfig:
    """`base` (default: the paper's sizes) with GMIC's window for both view angles."""
    return (base or PipelineConfig()).with_(cc_window=WINDOW, mlo_window=WINDOW)


@dataclass(frozen=True)
class GMICWindow:
    """One network input and where it came from."""

    pixels: np.ndarray  # (2944, 1920) float32, standardised
    pads: tuple[int, int, int]  # zero rows above, rows below, columns right of the cropped image
    record: WindowRecord  # borders in the padded image


def window_placement(shape: tuple[int, int], angle: Angle, best_center: tuple[int, int],
                     window: tuple[int, int] = WINDOW) -> tuple[tuple[int, int, int], WindowRecord]:
    """Padding and borders of the noise-free window (the DMV-CNN's placement with zero noise;
    the authors' RandomState(0) draws are multiplied by zero, so any stream gives this)."""
    return sample_window(shape, angle, best_center, window,
                         np.random.RandomState(0), augment=False, max_crop_noise=(0, 0),
                         max_crop_size_noise=0)


def cut_gmic_window(pixels: np.ndarray, pads: tuple[int, int, int], record: WindowRecord,
                    ) -> np.ndarray:
    """The raw float32 window (zero padding applied before normalisation)."""
    pad_top, pad_bottom, pad_right = pads
    image = pixels.astype(np.float32)
    if pad_top or pad_bottom or pad_right:
        image = np.pad(image, ((pad_top, pad_bottom), (0, pad_right)))
    top, bottom, left, right = record.borders_final
    return image[top:bottom, left:right]


_BLOCK = 8192  # numpy's reduction buffer: pairwise sums per block, blocks added in order
_LEAF = 128  # numpy's pairwise block size; 8 accumulators inside a leaf
_F32 = np.float32


def _f32(value: object) -> np.float32:
    # numpy's stubs type float32 arithmetic on untyped arrays as Any; the value is a float32
    return cast(np.float32, np.float32(value))  # type: ignore[arg-type]


def _pairwise_sum(a: np.ndarray) -> np.float32:
    """numpy's float32 pairwise summation of one 1-D chunk, step by step (any length)."""
    n = a.size
    if n < 8:
        total = _F32(0.0)
        for value in a:
            total = _F32(total + value)
        return _f32(total)
    if n <= _LEAF:
        whole = n - n % 8
        lanes = a[:whole].reshape(-1, 8)
        r = lanes[0].copy()
        for row in lanes[1:]:
            r += row
        total = _F32(_F32(_F32(r[0] + r[1]) + _F32(r[2] + r[3]))
                     + _F32(_F32(r[4] + r[5]) + _F32(r[6] + r[7])))
        for value in a[whole:]:
            total = _F32(total + value)
        return _f32(total)
    half = n // 2
    half -= half % 8
    return _f32(_pairwise_sum(a[:half]) + _pairwise_sum(a[half:]))


def _full_block_sums(blocks: np.ndarray) -> np.ndarray:
    """`_pairwise_sum` of every row of a (B, 8192) array at once: 64 leaves of 16 x 8 values
    summed lane-wise, the 8 lanes combined as a tree, then the leaves as a balanced tree."""
    leaves = blocks.reshape(blocks.shape[0], _BLOCK // _LEAF, _LEAF // 8, 8)
    r = leaves[:, :, 0].copy()
    for i in range(1, leaves.shape[2]):
        r += leaves[:, :, i]
    s = (r[..., 0] + r[..., 1]) + (r[..., 2] + r[..., 3])
    s = s + ((r[..., 4] + r[..., 5]) + (r[..., 6] + r[..., 7]))
    while s.shape[1] > 1:
        s = s[:, 0::2] + s[:, 1::2]
    return cast(np.ndarray, s[:, 0])


def float32_sum(a: np.ndarray) -> np.float32:
    """The float32 sum of a C-contiguous array exactly as numpy 1.x computes `a.sum()` (the
    authors' environment): pairwise within 8192-element blocks, blocks accumulated in order.
    numpy 2 reduces in another order, which moves the standardised input by ~1 ulp."""
    flat = np.ascontiguousarray(a, dtype=np.float32).ravel()
    whole = flat.size - flat.size % _BLOCK
    total = _F32(0.0)
    for value in _full_block_sums(flat[:whole].reshape(-1, _BLOCK)):
        total = _F32(total + value)
    if whole < flat.size:
        total = _F32(total + _pairwise_sum(flat[whole:]))
    return _f32(total)


def standardize(window: np.ndarray) -> np.ndarray:
    """`a -= mean(a); a /= max(std(a), 1e-5)` on a float32 copy (population std; the padding
    zeros count), with numpy 1.x's float32 arithmetic step by step, so the input is
    bit-identical to the authors' whatever numpy is installed: the sums of `float32_sum`;
    `mean` divides the float32 sum in float64 and rounds; `std` centres again with a float32
    division, then divides its sum of squares like `mean`."""
    a = np.array(window, dtype=np.float32, copy=True, order="C")
    count = a.size
    a -= _F32(float(float32_sum(a)) / count)
    centred = a - _F32(float32_sum(a) / _F32(count))
    variance = _F32(float(float32_sum(centred * centred)) / count)
    a /= np.maximum(np.sqrt(variance), _F32(1e-5))
    return a


def gmic_window(image: PreparedImage, window: tuple[int, int] = WINDOW) -> GMICWindow:
    """The standardised GMIC input of one prepared (cropped, canonical) image."""
    pads, record = window_placement(image.pixels.shape, image.view.angle, image.best_center,
                                    window)
    if record.resized:  # cannot happen without noise; the network needs exactly this size
        raise AssertionError(f"GMIC window resized: {record}")
    return GMICWindow(standardize(cut_gmic_window(image.pixels, pads, record)), pads, record)


def stack_windows(windows: Sequence[GMICWindow]) -> np.ndarray:
    """(N, 1, H, W) float32 batch for the network."""
    return np.stack([w.pixels for w in windows])[:, None]
