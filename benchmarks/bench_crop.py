"""Stage 1 alone (issue 14): CPU seconds per full-size view of `crop_mammogram` on
bench_exam.py's phantom shapes, no PNG read. Compare two trees by their PYTHONPATH:

    PYTHONPATH=. python benchmarks/bench_crop.py
"""

from __future__ import annotations

import time

import numpy as np

import mammocli
from mammocli.preprocess.crop import crop_mammogram
from mammocli.synthetic.phantoms import phantom

FULL_SHAPES = {"CC": (3068, 2703), "MLO": (3421, 2426)}  # as bench_exam.py


def main(repeats: int = 5) -> None:
    rng = np.random.default_rng(0)
    images = [phantom(FULL_SHAPES[a], rng) for a in ("CC", "CC", "MLO", "MLO")]
    for image in images:  # warm-up
        crop_mammogram(image, "right")
    started = time.process_time()
    for _ in range(repeats):
        for image in images:
            crop_mammogram(image, "right")
    per_view = (time.process_time() - started) / repeats / len(images)
    print(f"{mammocli.__file__}: crop {per_view:.4f} CPU s per full-size view")


if __name__ == "__main__":
    main()
