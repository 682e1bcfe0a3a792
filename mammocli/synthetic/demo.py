"""The demo folder of `mammocli examples make DIR`: synthetic (non-patient) exams, training
datasets and configs sized for a 2-core CPU, so that the README's quickstart runs as written.

Everything is written with paths relative to DIR (configs name their data relative to their
own folder), so the folder can be moved. Nothing here is patient data, and a model's outputs
on these phantoms mean nothing: they exercise the pipeline.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputError
from ..outputs.files import atomic_write_text
from ..views import View
from .datasets import write_breast_dataset, write_patch_dataset
from .phantoms import write_exam

# What the demo writes at the top of DIR (each a file or a folder).
EXAM, ROOT, DATA = "exam", "root", "data"
PIPELINE, LABELS, SCORES = "pipeline.yaml", "labels.csv", "scores.csv"
TRAIN_CONFIGS = ("train_patch.yaml", "train_breast.yaml", "train_gmic.yaml")
FULL_SIZE_EXAM = "exam-full-size"

EXAM_SHAPE = (256, 192)  # the demo exams' images (H, W); the authors' are 3328 x 2560
FULL_SHAPE = (3328, 2560)

# Pipeline sizes ~15x below the paper's for EXAM_SHAPE images: a demo exam takes seconds on
# a 2-core CPU instead of minutes. The same sizes train the demo models, so a demo export
# runs with `predict --pipeline-config pipeline.yaml`.
PIPELINE_YAML = """\
# Pipeline sizes for the demo exams (~15x below the paper's): seconds per exam on 2 cores.
# Results at these sizes are NOT the paper's model: omit --pipeline-config for real exams.
cc_window: [160, 112]      # network input (H, W) for CC views; paper: [2677, 1942]
mlo_window: [176, 96]      # paper: [2974, 1748]
crop_iterations: 6         # crop opening radius in pixels; paper: 100
crop_buffer: 4             # margin around the breast; paper: 50
patch_size: 32             # patch classifier input; paper: 256
patch_stride: 32           # paper: 70
heatmap_batch_size: 128    # paper: 100
max_crop_noise: [8, 8]     # augmentation shift; paper: [100, 100]
max_crop_size_noise: 8     # augmentation size change; paper: 100
"""

_SMALL_PIPELINE = """\
pipeline:                          # the demo's sizes (as pipeline.yaml); the paper's are defaults
  cc_window: [160, 112]
  mlo_window: [176, 96]
  crop_iterations: 6
  crop_buffer: 4
  patch_size: 32
  patch_stride: 32
  heatmap_batch_size: 128
  max_crop_noise: [8, 8]
  max_crop_size_noise: 8
"""

TRAIN_PATCH_YAML = """\
# mammocli train --config train_patch.yaml   (the demo; examples/train_patch.yaml: full size)
# The patch classifier (DenseNet-121) from random weights on the demo's patch dataset:
# one short epoch on a 2-core CPU. Paths are relative to this file's folder.
task: patch
data:
  train: data/patches/manifest.csv
  val_fraction: 0.25
  patches: {malignant: 1, benign: 1, outside: 1, negative: 1}
  val_patches_per_image: 1
output_dir: runs/patch
model:
  init: {from: random}             # official: start from the NYU weights (downloads them)
optimizer: {name: adam, lr: 1.0e-3}
pipeline: {patch_size: 32}         # the paper's: 256
epochs: 1
batch_size: 8
seed: 0
device: cpu
"""

TRAIN_BREAST_YAML = f"""\
# mammocli train --config train_breast.yaml   (the demo; examples/train_breast.yaml: full size)
# The view-wise breast model (image-only) from random weights on the demo's exams: a few
# minutes on a 2-core CPU. Paths are relative to this file's folder.
task: breast
data:
  train: data/exams/manifest.csv
  val_fraction: 0.25
output_dir: runs/breast
model:
  kind: view-wise
  variant: image-only
  init: {{from: random}}
optimizer: {{name: adam, lr: 1.0e-3}}
{_SMALL_PIPELINE}epochs: 2
batch_size: 2
seed: 0
device: cpu
"""

_GMIC_PIPELINE = "".join(line + "\n" for line in _SMALL_PIPELINE.splitlines()
                         if "_window" not in line)  # GMIC's window is gmic.window

TRAIN_GMIC_YAML = f"""\
# mammocli train --config train_gmic.yaml   (the demo; examples/train_gmic.yaml: full size)
# GMIC from random weights on the demo's exams (each image takes its breast's labels), at a
# small window: a few minutes on a 2-core CPU. Paths are relative to this file's folder.
task: gmic
data:
  train: data/exams/manifest.csv
  val_fraction: 0.25
output_dir: runs/gmic
gmic:
  member: 1
  labels: breast
  window: [192, 128]               # multiples of 64; the released model's: [2944, 1920]
  patch_size: 64                   # paper: 256
  num_patches: 2                   # paper: 6
model:
  init: {{from: random}}
optimizer: {{name: adam, lr: 1.0e-3}}
{_GMIC_PIPELINE}epochs: 1
batch_size: 4
seed: 0
device: cpu
"""

# Which views of each root exam carry a lesion (bright mass), and so which breasts the demo
# labels malignant: both classes occur, so hybrid and evaluate have AUCs to compute.
_ROOT_LESIONS: tuple[tuple[View, ...], ...] = (
    (View.L_CC, View.L_MLO), (), (View.R_CC, View.R_MLO), (),
)
# Two made-up readers' probabilities of malignancy per (exam, breast), labels from _ROOT_LESIONS.
_READERS = {"reader_a": (0.7, 0.1, 0.2, 0.1, 0.1, 0.6, 0.3, 0.2),
            "reader_b": (0.4, 0.3, 0.1, 0.2, 0.2, 0.8, 0.1, 0.1)}


@dataclass(frozen=True)
class Demo:
    """What `make_demo` wrote: the top-level entries of the folder, and what to run next."""

    folder: Path
    written: tuple[str, ...]
    next_commands: tuple[str, ...]


def make_demo(folder: Path, *, overwrite: bool = False, full_size: bool = False) -> Demo:
    """Write the demo into `folder` (created if missing). A folder holding anything is
    refused unless `overwrite`: then the demo's own files are rewritten and nothing else in
    the folder is touched."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder",
                          hint="give a new or empty folder for the demo")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise OutputError(f"{folder}: the folder is not empty",
                          hint="give a new or empty folder, or add --overwrite to rewrite "
                               "the demo's files in it (other files are left alone)")
    try:
        written = _write(folder, full_size)
    except OSError as exc:
        raise OutputError(f"{folder}: could not write the demo: {exc.strerror or exc}",
                          hint="check the folder's permissions and free space") from exc
    return Demo(folder=folder, written=tuple(written), next_commands=next_commands(folder))


def _write(folder: Path, full_size: bool) -> list[str]:
    written = []
    write_exam(folder / EXAM, shape=EXAM_SHAPE, seed=0, lesion_views=(View.L_CC, View.L_MLO))
    written.append(f"{EXAM}/")
    for i, lesions in enumerate(_ROOT_LESIONS, start=1):
        write_exam(folder / ROOT / f"exam{i}", shape=EXAM_SHAPE, seed=i, lesion_views=lesions)
    written.append(f"{ROOT}/")
    # Cut to the tissue as predict crops a view: patches are standardised over their image.
    write_patch_dataset(folder / DATA / "patches", 8, shape=EXAM_SHAPE, seed=0, crop_margin=4)
    write_breast_dataset(folder / DATA / "exams", 8, shape=EXAM_SHAPE, seed=0)
    written.append(f"{DATA}/")
    texts = {PIPELINE: PIPELINE_YAML, "train_patch.yaml": TRAIN_PATCH_YAML,
             "train_breast.yaml": TRAIN_BREAST_YAML, "train_gmic.yaml": TRAIN_GMIC_YAML,
             LABELS: labels_csv(), SCORES: scores_csv()}
    for name, text in texts.items():
        atomic_write_text(folder / name, text)
        written.append(name)
    if full_size:  # ~70 MB of PNGs: only on request
        write_exam(folder / FULL_SIZE_EXAM, shape=FULL_SHAPE, seed=0,
                   lesion_views=(View.L_CC, View.L_MLO))
        written.append(f"{FULL_SIZE_EXAM}/")
    return written


def _breasts() -> Iterable[tuple[str, str, int]]:
    for i, lesions in enumerate(_ROOT_LESIONS, start=1):
        for side in ("L", "R"):
            yield f"exam{i}", side, int(any(v.side.letter == side for v in lesions))


def labels_csv() -> str:
    """exam_id, side, label (1 = malignant) per breast of the root's exams."""
    return _csv(["exam_id", "side", "label"], [list(b) for b in _breasts()])


def scores_csv() -> str:
    """Two made-up readers' scores per breast of the root's exams (long layout, with labels)."""
    rows = [[exam, side, reader, f"{scores[k]:g}", label]
            for reader, scores in _READERS.items()
            for k, (exam, side, label) in enumerate(_breasts())]
    return _csv(["exam_id", "side", "reader", "score", "label"], rows)


def _csv(header: list[str], rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def next_commands(folder: Path) -> tuple[str, ...]:
    d = folder.as_posix().rstrip("/")
    return (
        f"mammocli predict {d}/{EXAM}/ --pipeline-config {d}/{PIPELINE}",
        f"mammocli predict {d}/{ROOT}/ --pipeline-config {d}/{PIPELINE} -o {d}-results/",
        f"mammocli evaluate --predictions {d}-results/ --labels {d}/{LABELS}",
        f"mammocli hybrid --radiologist-scores {d}/{SCORES} --predictions {d}-results/",
        f"mammocli train --config {d}/train_patch.yaml",
    )
