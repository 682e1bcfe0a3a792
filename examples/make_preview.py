"""Remake docs/preview.png, the README's example of `predict --preview`, from a patch model
trained here on synthetic data (not the official weights).

    python examples/make_preview.py docs/preview.png [--keep DIR]

Steps, all through the product's own commands (nothing stubbed):
1. `mammocli examples make` into a temporary folder: its `exam/` is a synthetic four-view
   phantom exam (not a mammogram) with a bright mass in the left breast (L-CC and L-MLO).
2. A patch set drawn by the demo's generator at the demo exams' size (256 x 192: the demo's
   own patch set is half that, so its masses would be half the size of the exam's), each
   image cut to its tissue as `predict` crops a view (else the per-image standardisation
   differs and the exam's mass reads as plain tissue), then `mammocli train` of the patch
   classifier (DenseNet-121, from random weights) on it.
3. `mammocli predict exam/ --variants image-and-heatmaps --weights patch=<export>` with the
   demo's pipeline sizes at a finer patch stride (8 px instead of 32, for a smoother heatmap).
   The breast-level model is NOT trained: its weights are random official-format files
   (`--weights-dir`), so the per-breast probabilities in the picture are ~0.5 and mean nothing.
4. The preview is shrunk (default half size) and saved as a 256-colour palette PNG.

Cost: 186 s wall, 145 s CPU (this process and its commands; 6 epochs) on a 2-core CPU
shared with other jobs, about 2 minutes of it the training; a quiet machine is faster. The
training is seeded, but float summation order makes a rerun's picture close to, not
bit-identical with, the committed one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from PIL import Image

from mammocli.synthetic.datasets import write_patch_dataset
from mammocli.synthetic.demo import EXAM_SHAPE
from mammocli.synthetic.phantoms import write_random_weights

# The patch classifier's training: long enough that the demo exam's mass lights up and the
# rest of the tissue stays clear (fewer epochs leave every patch near 0.25, 1/4 classes).
TRAIN_PATCH = {
    "task": "patch",
    "data": {
        "train": "patches/manifest.csv",
        "val_fraction": 0.25,
        "patches": {"malignant": 8, "benign": 4, "outside": 2, "negative": 8,
                    # patches on the tissue's edge count as outside, so edges stay clear
                    "max_tissue_outside": 0.3},
        "val_patches_per_image": 2,
    },
    "output_dir": "runs/patch",
    "model": {"init": {"from": "random"}},
    "optimizer": {"name": "adam", "lr": 3.0e-4},
    "pipeline": {"patch_size": 32},  # the demo's; the paper's: 256
    "epochs": 6,
    "batch_size": 16,
    "seed": 0,
    "device": "cpu",
}
PATCH_IMAGES = 16
HEATMAP_STRIDE = 8  # the demo's pipeline.yaml: 32 (a 5 x 3 grid per view: too coarse to see)


def mammocli(*args: str | Path) -> None:
    subprocess.run([sys.executable, "-m", "mammocli", *map(str, args)], check=True)


def make_preview(work: Path, target: Path, scale: float) -> None:
    demo = work / "demo"
    mammocli("examples", "make", demo, "-q")
    pipeline = yaml.safe_load((demo / "pipeline.yaml").read_text())
    write_patch_dataset(work / "patches", PATCH_IMAGES, shape=EXAM_SHAPE, seed=0,
                        crop_margin=pipeline["crop_buffer"])
    (work / "train_patch.yaml").write_text(yaml.safe_dump(TRAIN_PATCH, sort_keys=False))
    mammocli("train", "--config", work / "train_patch.yaml", "-q")
    pipeline["patch_stride"] = HEATMAP_STRIDE
    (work / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    random_weights = write_random_weights(work / "random-weights")
    mammocli("predict", demo / "exam", "--variants", "image-and-heatmaps",
             "--weights-dir", random_weights,
             "--weights", f"patch={work / 'runs/patch/export/sample_patch_model.p'}",
             "--pipeline-config", work / "pipeline.yaml", "--preview", work / "preview",
             "-o", work / "result.json", "-q")
    with Image.open(work / "preview" / "exam.png") as picture:
        size = (round(picture.width * scale), round(picture.height * scale))
        small = picture.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    target.parent.mkdir(parents=True, exist_ok=True)
    small.quantize(256).save(target, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="the PNG to write, e.g. docs/preview.png")
    parser.add_argument("--scale", type=float, default=0.5, help="shrink factor (default 0.5)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this (new) folder and keep it: demo, export, result")
    args = parser.parse_args()
    wall, cpu = time.perf_counter(), _cpu()
    if args.keep is not None:
        args.keep.mkdir(parents=True)
        make_preview(args.keep, args.target, args.scale)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            make_preview(Path(tmp), args.target, args.scale)
    print(f"wrote {args.target} ({args.target.stat().st_size // 1024} kB) in "
          f"{time.perf_counter() - wall:.0f} s wall, {_cpu() - cpu:.0f} s CPU")


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the mammocli commands)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


if __name__ == "__main__":
    main()
