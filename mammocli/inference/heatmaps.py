"""Stage 3: benign and malignant heatmaps from the patch classifier (SPEC section 5).

Exactness and speed together:
* patches are cut as views of one float32 image (`unfold`), never copied one by one;
* patches that are pure background are identical after standardisation, so one forward pass
  serves them all;
* the overlap average is separable: with R (rows x H) and C (cols x W) the patch-footprint
  indicators and P the per-patch probabilities, the heatmap is (R^T P C) / (R^T 1 C).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..models.densenet import BENIGN_CLASS, MALIGNANT_CLASS, PatchClassifier
from ..models.densenet_inference import InferencePatchClassifier
from ..preprocess.patches import box_sums, integral_image, pad_to_patch
from ..reporting import stage


@dataclass(frozen=True)
class Heatmaps:
    """Per-pixel probabilities, float32, same shape and orientation as the image they came from."""

    benign: np.ndarray
    malignant: np.ndarray
    patches: int
    # Softmax outputs per patch, (patches, 4), in the authors' order (columns outer, rows inner).
    patch_probabilities: np.ndarray | None = None


def stride_list(length: int, patch: int, stride: int, rng: random.Random) -> list[int]:
    """The authors' `stride_list_generator` with a fixed stride: strides summing to
    `length - patch`, shortened by one at randomly chosen steps so the last patch ends exactly
    at the edge. Draws from `rng` exactly as CPython's `random.sample` does for them."""
    if length < patch:
        raise ValueError(f"length {length} is smaller than the patch size {patch}")
    positions = (length - patch) // stride + 1
    leftover = (length - patch) % stride
    if leftover == 0:
        return [stride] * (positions - 1)
    overlap = stride - leftover
    steps = positions
    average = stride - overlap // steps
    strides = [average] * steps
    for i in rng.sample(range(steps), overlap % steps):
        strides[i] = average - 1
    return strides


def patch_offsets(length: int, patch: int, stride: int, rng: random.Random) -> np.ndarray:
    strides = stride_list(length, patch, stride, rng)
    return np.concatenate([[0], np.cumsum(strides)]).astype(np.int64)


def standardize(image: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """The authors' per-image standardisation: population std, floored at 1e-5, in `dtype`."""
    out: np.ndarray = image.astype(dtype, copy=True)
    out -= out.mean()
    out /= max(out.std(), 1e-5)
    return out


def _footprints(offsets: np.ndarray, patch: int, size: int) -> np.ndarray:
    indicator = np.zeros((len(offsets), size), dtype=np.float64)
    for i, start in enumerate(offsets):
        indicator[i, start:start + patch] = 1.0
    return indicator


def assemble(probabilities: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int,
             shape: tuple[int, int]) -> np.ndarray:
    """Average the per-patch probabilities (rows x cols grid) over their footprints."""
    r = _footprints(rows, patch, shape[0])
    c = _footprints(cols, patch, shape[1])
    total = r.T @ probabilities @ c
    count = np.outer(r.sum(axis=0), c.sum(axis=0))
    out: np.ndarray = (total / count).astype(np.float32)
    return out


class HeatmapEngine:
    """Runs the patch classifier over sliding-window patches of canonical cropped images."""

    def __init__(self, model: PatchClassifier, device: torch.device, *, patch_size: int = 256,
                 stride: int = 70, batch_size: int = 100,
                 dtype: torch.dtype = torch.float32, micro_batch: int | None = None) -> None:
        self.device = device
        self.patch = patch_size
        self.stride = stride
        self.batch_size = batch_size
        # On CPU a batch is run in parts of 25 patches: the same speed, a quarter of the
        # activation memory (a 100-patch DenseNet pass peaks near 2 GiB). Per-patch outputs
        # change only by float rounding (oneDNN's blocking depends on the batch size).
        self.micro_batch = micro_batch or (25 if device.type == "cpu" else batch_size)
        self.dtype = dtype
        # The network actually run: the same function with fewer memory passes; bit-identical
        # in float32, with BatchNorm folded into the convolutions in the approximate precisions.
        # Only the plan is kept on the device: the module it is built from is not needed again.
        self.network = InferencePatchClassifier.build(model.eval(), device, dtype,
                                                      fold=dtype != torch.float32)
        self.forwarded = 0  # patches actually run through the network (after dedup)

    def grid(self, shape: tuple[int, int], rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
        """Row then column offsets, drawing from `rng` in the authors' order."""
        rows = patch_offsets(shape[0], self.patch, self.stride, rng)
        cols = patch_offsets(shape[1], self.patch, self.stride, rng)
        return rows, cols

    def patch_probabilities(self, image: np.ndarray, rows: np.ndarray,
                            cols: np.ndarray) -> np.ndarray:
        """Softmax outputs (len(cols), len(rows), 4) in the authors' patch order
        (columns outer, rows inner) for a canonical uint16 image."""
        return self.exam_patch_probabilities([image], [(rows, cols)])[0]

    @torch.inference_mode()
    def exam_patch_probabilities(self, images: Sequence[np.ndarray],
                                 grids: Sequence[tuple[np.ndarray, np.ndarray]],
                                 ) -> list[np.ndarray]:
        """`patch_probabilities` of several images, batched across them as the authors do
        (consecutive patches of the exam, so no image ends in a part-empty batch)."""
        p = self.patch
        sources: list[torch.Tensor] = []  # per image: unfold views of the normalised image
        outputs: list[tuple[np.ndarray, np.ndarray]] = []  # per image: (probs, background)
        todo_parts: list[np.ndarray] = []  # per image: (image, patch, row, col) to forward
        for i, (image, (rows, cols)) in enumerate(zip(images, grids, strict=True)):
            normalized = torch.from_numpy(standardize(image).astype(np.float32))
            sources.append(normalized.unfold(0, p, 1).unfold(1, p, 1))  # (H-p+1, W-p+1, p, p)
            col_idx, row_idx = np.meshgrid(cols, rows, indexing="ij")
            row_idx, col_idx = row_idx.ravel(), col_idx.ravel()
            # Patches with no tissue are all the same constant: classify one, reuse it.
            tissue = _patch_has_tissue(image > 0, row_idx, col_idx, p)
            todo = np.flatnonzero(tissue)
            background = np.flatnonzero(~tissue)
            if background.size:
                todo = np.concatenate([todo, background[:1]])
            todo_parts.append(np.stack([np.full(len(todo), i), todo, row_idx[todo],
                                        col_idx[todo]], axis=1))
            outputs.append((np.empty((len(row_idx), 4), dtype=np.float32), background))
        work = np.concatenate(todo_parts) if todo_parts else np.empty((0, 4), np.int64)
        self.forwarded += len(work)
        stage("heatmaps", 0, len(work))
        for start in range(0, len(work), self.batch_size):
            chunk = work[start:start + self.batch_size]
            batch = torch.empty((len(chunk), p, p), dtype=torch.float32)
            for i in np.unique(chunk[:, 0]):
                rows_of = np.flatnonzero(chunk[:, 0] == i)
                batch[torch.from_numpy(rows_of)] = sources[i][
                    torch.from_numpy(chunk[rows_of, 2]), torch.from_numpy(chunk[rows_of, 3])]
            probs = np.concatenate([self._forward(part)
                                    for part in torch.split(batch, self.micro_batch)])
            for i in np.unique(chunk[:, 0]):
                mine = chunk[:, 0] == i
                outputs[i][0][chunk[mine, 1]] = probs[mine]
            stage("heatmaps", start + len(chunk), len(work))
        result = []
        for (out, background), (rows, cols) in zip(outputs, grids, strict=True):
            if background.size:
                out[background] = out[background[0]]
            result.append(out.reshape(len(cols), len(rows), 4))
        return result

    def _forward(self, batch: torch.Tensor) -> np.ndarray:
        # Three identical grey channels, as the authors feed them. (Summing conv0's weights
        # over channels instead moves outputs by ~1e-5: outside our fidelity tolerance.)
        x = batch.unsqueeze(1).expand(-1, 3, -1, -1).to(self.device, self.dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.network(x).float(), dim=1).cpu().numpy()

    def heatmaps(self, image: np.ndarray, rng: random.Random) -> Heatmaps:
        """Heatmaps of a canonical cropped image. Images smaller than a patch are padded with
        background at the bottom/right, and the heatmaps cut back to the image."""
        return self.exam_heatmaps([image], rng)[0]

    def exam_heatmaps(self, images: Sequence[np.ndarray], rng: random.Random) -> list[Heatmaps]:
        """`heatmaps` of all images of an exam (in the order given, which is the order of the
        stride-list draws), with patches batched across the images."""
        padded_images = [pad_to_patch(image, self.patch) for image in images]
        grids = [self.grid(padded.shape, rng) for padded in padded_images]
        all_probs = self.exam_patch_probabilities(padded_images, grids)
        out = []
        for image, padded, (rows, cols), probs in zip(images, padded_images, grids, all_probs,
                                                      strict=True):
            height, width = image.shape
            grid = probs.transpose(1, 0, 2)  # (rows, cols, classes)
            benign = assemble(grid[..., BENIGN_CLASS].astype(np.float64), rows, cols,
                              self.patch, padded.shape)
            malignant = assemble(grid[..., MALIGNANT_CLASS].astype(np.float64), rows, cols,
                                 self.patch, padded.shape)
            out.append(Heatmaps(benign=benign[:height, :width],
                                malignant=malignant[:height, :width],
                                patches=len(rows) * len(cols),
                                patch_probabilities=probs.reshape(-1, 4)))
        return out


def _patch_has_tissue(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, p: int) -> np.ndarray:
    return box_sums(integral_image(mask), rows, cols, rows + p, cols + p) > 0
