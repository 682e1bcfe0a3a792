"""The network input window of stage 4, with the authors' test-time augmentation (SPEC 4).

Random draws follow the authors' order exactly (numpy RandomState, MT19937): two uniforms for
the position noise when noise is on, then always four for the size noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..views import Angle


@dataclass(frozen=True)
class WindowRecord:
    """Where the window was taken, for results and fidelity checks."""

    padded_shape: tuple[int, int]
    borders_after_crop_noise: tuple[int, int, int, int]
    borders_final: tuple[int, int, int, int]  # (top, bottom, left, right) in the padded image
    resized: bool


def _shift_inside(start: int, end: int, size: int, window: int) -> tuple[int, int]:
    if start < 0:
        return 0, window
    if end > size:
        return size - window, size
    return start, end


def sample_window(shape: tuple[int, int], angle: Angle, best_center: tuple[int, int],
                  window: tuple[int, int], rng: np.random.RandomState, *, augment: bool,
                  max_crop_noise: tuple[int, int], max_crop_size_noise: int,
                  ) -> tuple[tuple[int, int, int], WindowRecord]:
    """Decide padding and borders. Returns ((pad_top, pad_bottom, pad_right), record)."""
    height, width = shape
    win_h, win_w = window
    noise_y, noise_x = max_crop_noise if augment else (0, 0)
    size_noise = max_crop_size_noise if augment else 0

    # 4.1 position noise
    mult = rng.uniform(-1, 1, size=2) if (noise_y or noise_x) else np.zeros(2, dtype=np.float32)
    cy, cx = best_center
    top, bottom = cy - win_h // 2, cy + win_h - win_h // 2
    left, right = cx - win_w // 2, cx + win_w - win_w // 2
    pad_top = pad_bottom = pad_right = 0
    if angle is Angle.CC:
        if height < win_h + 2 * (noise_y + size_noise):
            pad_total = win_h - height + 2 * (noise_y + size_noise)
            pad_top = int(pad_total / 2)
            pad_bottom = pad_total - pad_top
            top = noise_y + size_noise
            bottom = top + win_h
    elif height < win_h + noise_y + size_noise:
        pad_bottom = win_h - height + noise_y + size_noise
        top, bottom = 0, win_h
    if width < win_w + noise_x + size_noise:
        pad_right = win_w - width + noise_x + size_noise
        left, right = 0, win_w
    padded_h, padded_w = height + pad_top + pad_bottom, width + pad_right

    top, bottom = _shift_inside(top, bottom, padded_h, win_h)
    left, right = _shift_inside(left, right, padded_w, win_w)
    mult_y, mult_x = float(mult[0]), float(mult[1])
    if top == 0:
        mult_y = abs(mult_y)
    elif bottom == padded_h:
        mult_y = -abs(mult_y)
    if left == 0:
        mult_x = abs(mult_x)
    elif right == padded_w:
        mult_x = -abs(mult_x)
    margin_y = padded_h - bottom if mult_y >= 0 else top
    margin_x = padded_w - right if mult_x >= 0 else left
    amplitude = np.array([min(noise_y, margin_y), min(noise_x, margin_x)])
    shift = np.round(amplitude * np.array([mult_y, mult_x], dtype=mult.dtype)).astype(np.int32)
    top, bottom = top + int(shift[0]), bottom + int(shift[0])
    left, right = left + int(shift[1]), right + int(shift[1])
    after_noise = (top, bottom, left, right)

    # 4.2 size noise: always four draws
    m = rng.uniform(-1, 1, size=4)
    amp = min(size_noise, top, padded_h - bottom, left, padded_w - right)
    amp_x = np.round(amp * win_w / win_h)
    delta = np.round(np.array([amp, amp, amp_x, amp_x]) * m).astype(np.int32)
    top, bottom = top + int(delta[0]), bottom + int(delta[1])
    left, right = left + int(delta[2]), right + int(delta[3])
    if not (0 <= top < bottom <= padded_h and 0 <= left < right <= padded_w):
        raise AssertionError(f"window {top, bottom, left, right} outside {padded_h, padded_w}")
    record = WindowRecord(
        padded_shape=(padded_h, padded_w),
        borders_after_crop_noise=after_noise,
        borders_final=(top, bottom, left, right),
        resized=(bottom - top, right - left) != (win_h, win_w),
    )
    return (pad_top, pad_bottom, pad_right), record


def cut_window(image: torch.Tensor, pads: tuple[int, int, int], record: WindowRecord,
               window: tuple[int, int]) -> torch.Tensor:
    """Cut (and resize back to `window`) the window from a (C, H, W) float tensor.

    The bicubic resize is OpenCV's INTER_CUBIC (a = -0.75, half-pixel centres, replicated
    border), which torch's bicubic interpolation without antialiasing computes.
    """
    pad_top, pad_bottom, pad_right = pads
    if pad_top or pad_bottom or pad_right:
        image = F.pad(image, (0, pad_right, pad_top, pad_bottom))
    top, bottom, left, right = record.borders_final
    patch = image[:, top:bottom, left:right]
    if record.resized:
        patch = F.interpolate(patch[None], size=window, mode="bicubic",
                              align_corners=False)[0]
    return patch


def standardize_image_channel(x: torch.Tensor) -> torch.Tensor:
    """Standardise channel 0 (the image) in float32; heatmap channels stay as they are."""
    image = x[0]
    mean = image.mean()
    std = image.std(unbiased=False).clamp_min(1e-5)
    out = x.clone()
    out[0] = (image - mean) / std
    return out
