"""Check the heatmap stage against the authors' reference outputs (../shared/nyu/reference):
per-patch probabilities of exams 0 and 1, for a given precision. A developer tool for speed work:
run it after every change to the patch path.

    python benchmarks/check_reference.py [--precision fp32|bf16] [--exams 0,1]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from mammocli.config import FlipMode, PipelineConfig
from mammocli.inference.devices import select_device, tune_allocator
from mammocli.inference.precision import Precision, configure
from mammocli.io.exam import ExamSource, ImageSource
from mammocli.models.loading import load_patch_classifier
from mammocli.preprocess.prepare import ExamPreparer
from mammocli.views import VIEWS

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "nyu" / "reference"


def exam_source(root: Path, entry: dict, exam_id: str) -> ExamSource:
    images = {
        view: tuple(ImageSource(path=root / "inputs" / "images" / f"{n}.png",
                                relative=f"{n}.png", view=view) for n in entry[view.value])
        for view in VIEWS
    }
    return ExamSource(exam_id=exam_id, folder=root / "inputs", images=images,
                      horizontal_flip=FlipMode(entry["horizontal_flip"].lower()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--exams", default="0,1")
    args = parser.parse_args()
    tune_allocator()
    wanted = {int(i) for i in args.exams.split(",")}
    root: Path = args.reference
    entries = json.loads((root / "inputs" / "exam_lists.json").read_text())["exams"]
    expected = np.load(root / "outputs" / "stage3_heatmaps_all_prob.npz")
    device = select_device("cpu")
    precision = Precision(args.precision)
    dtype = configure(precision, device)
    from mammocli.inference.heatmaps import HeatmapEngine
    engine = HeatmapEngine(load_patch_classifier(root / "weights" / "sample_patch_model.p"),
                           device, dtype=dtype)
    config = PipelineConfig()

    prepare = ExamPreparer(config)  # stages 1-2 need no models
    strides = random.Random(0)  # one stream over exam 0 then exam 1, as the authors' run
    for i, entry in enumerate(entries):
        prepared = prepare(exam_source(root, entry, f"exam{i}"))
        images = [img.pixels for view in VIEWS for img in prepared[view]]
        grids = [engine.grid(im.shape, strides) for im in images]
        if i not in wanted:
            continue
        started = time.perf_counter()
        probs = engine.exam_patch_probabilities(images, grids)
        seconds = time.perf_counter() - started
        ours = np.concatenate([p.reshape(-1, 4) for p in probs])
        ref = expected[f"exam{i}"]
        diff = np.abs(ours.astype(np.float64) - ref)
        print(f"exam{i} {args.precision}: {len(ours)} patches in {seconds:.1f} s "
              f"({len(ours) / seconds:.1f}/s); max |diff| {diff.max():.3g}, "
              f"mean {diff.mean():.3g}")


if __name__ == "__main__":
    main()
