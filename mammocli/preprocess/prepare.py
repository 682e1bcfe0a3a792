"""Stages 1-2 for one image: orientation, crop, canonical orientation, best centre."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import FlipMode, PipelineConfig
from ..errors import InputError, MissingViewError
from ..io.dicom.options import DicomOptions
from ..io.exam import ExamSource, ImageSource, ViewImage
from ..io.load import read_view_image
from ..views import VIEWS, View
from .centers import best_center
from .crop import CropResult, crop_mammogram
from .orientation import Orientation, decide_orientation, to_canonical

PreparedExam = dict[View, list["PreparedImage"]]


@dataclass(frozen=True)
class PreparedImage:
    view: View
    source: ImageSource
    orientation: Orientation
    crop: CropResult
    pixels: np.ndarray  # cropped, canonical orientation, uint16, C-contiguous
    best_center: tuple[int, int]
    warnings: tuple[str, ...] = ()
    stored_shape: tuple[int, int] = (0, 0)  # (rows, columns) of the image as stored


def prepare_image(image: ViewImage, flip_mode: FlipMode, config: PipelineConfig,
                  ) -> PreparedImage:
    source = image.source
    orientation = decide_orientation(image.pixels, source.view, flip_mode, source.facing)
    crop = crop_mammogram(image.pixels, orientation.facing.value,
                          iterations=config.crop_iterations, buffer=config.crop_buffer,
                          where=source.relative)
    pixels = np.ascontiguousarray(to_canonical(crop.apply(image.pixels), orientation))
    center = best_center(pixels, source.view.angle, crop.rightmost_points,
                         crop.bottommost_points, config.window(source.view.angle))
    warnings = list(image.warnings)
    if crop.distance_from_starting_side > 0:
        warnings.append(
            f"{source.relative}: the breast does not touch the chest-wall edge "
            f"({crop.distance_from_starting_side} px gap); check the orientation"
        )
    rows, columns = image.pixels.shape[:2]
    return PreparedImage(source.view, source, orientation, crop, pixels, center, tuple(warnings),
                         (int(rows), int(columns)))


def check_usable(exam: ExamSource) -> None:
    """Raise the exam's discovery problem, or a missing-view error that lists every file left
    out (with its reason and the option that would admit it) and a hint for the input kind."""
    if exam.problem is not None:
        raise InputError(f"{exam.exam_id}: {exam.problem.message}", hint=exam.problem.hint)
    missing = exam.missing_views
    if not missing:
        return
    lines = "".join(
        f"\n  {s.relative}: {s.reason}" + (f" (admit with {s.admit_with})" if s.admit_with else "")
        for s in exam.skipped)
    flags = sorted({s.admit_with for s in exam.skipped if s.admit_with})
    if exam.input_kind == "dicom":
        hint = ("each exam needs L-CC, R-CC, L-MLO and R-MLO; the view comes from the DICOM "
                "header (ViewPosition, ImageLaterality, ...): map files with --views-csv")
    else:
        hint = ("each exam needs L-CC, R-CC, L-MLO and R-MLO; name files like L_CC.png "
                "or list them in exam.yaml")
    if flags:
        hint = f"files were left out that {' / '.join(flags)} would admit; " + hint
    skipped_part = f"; files not used:{lines}" if lines else ""
    raise MissingViewError(
        f"{exam.exam_id}: missing view(s) {', '.join(v.value for v in missing)}{skipped_part}",
        hint=hint)


@dataclass(frozen=True)
class ExamPreparer:
    """Stages 1-2 for every image of an exam. Plain values only, so a process pool can run it
    (`predict --prepare-workers`) while the models stay in the main process."""

    config: PipelineConfig
    flip_mode: FlipMode = FlipMode.AUTO
    dicom: DicomOptions = DicomOptions()

    def __call__(self, exam: ExamSource) -> PreparedExam:
        check_usable(exam)
        flip = exam.horizontal_flip or self.flip_mode
        return {
            view: [prepare_image(read_view_image(src, dicom=self.dicom), flip, self.config)
                   for src in exam.images[view]]
            for view in VIEWS
        }
