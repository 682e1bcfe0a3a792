"""One exam's result record from what the shared stages and a family computed. The only place
that assembles a `PredictionResult`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import __version__
from ..config import PipelineConfig
from ..io.dicom.header_fields import exam_header, image_fields
from ..io.exam import ExamSource
from ..outputs.schema import ImageReport, ImageStats, PredictionResult, SkippedRecord, Uids
from ..outputs.weights_used import WeightsUsed
from ..preprocess.prepare import PreparedImage
from ..views import VIEWS, View
from ..vocabulary import Family, ModelKind, Precision
from .family import ImageOutput, Inference


def tissue_mean(pixels: np.ndarray) -> float:
    """Mean intensity of the tissue (the nonzero pixels of the crop; the background is 0 after
    reading) as a fraction of the 16-bit range the pixels are read into."""
    tissue = pixels[pixels > 0]
    return round(float(tissue.mean()) / 65535.0, 6) if tissue.size else 0.0


def image_report(image: PreparedImage, output: ImageOutput, *, include_uids: bool
                 ) -> ImageReport:
    uids = image.source.uids if include_uids else None  # captured at discovery (DICOM only)
    rows, columns = image.stored_shape
    return ImageReport(
        source=image.source.relative,
        crop_window=image.crop.window_location,
        flipped=image.orientation.needs_flip,
        orientation_from=image.orientation.decided_by,  # type: ignore[arg-type]
        best_center=image.best_center,
        distance_from_starting_side=image.crop.distance_from_starting_side,
        predictions=output.predictions,
        outputs=output.outputs,
        uids=Uids(study=uids.study, series=uids.series, sop_instance=uids.sop_instance)
        if uids is not None else None,
        header=dict(image.source.header) or None,
        image=ImageStats(rows=rows, columns=columns, tissue_mean=tissue_mean(image.pixels)),
    )


def build_result(exam: ExamSource, prepared: Mapping[View, list[PreparedImage]],
                 inference: Inference, *, family: Family, kind: ModelKind, device: str,
                 precision: Precision, seed: int, config: PipelineConfig, duration_s: float,
                 weights: list[WeightsUsed], include_uids: bool) -> PredictionResult:
    """Warnings in reading order: discovery, the family's, then each image's (views order)."""
    assert inference.primary is not None and inference.predictions
    warnings = [*exam.warnings, *inference.warnings]
    views: dict[View, list[ImageReport]] = {}
    for view in VIEWS:
        outputs = inference.images.get(view) or [ImageOutput()] * len(prepared[view])
        reports = []
        for image, output in zip(prepared[view], outputs, strict=True):
            warnings.extend(image.warnings)
            reports.append(image_report(image, output, include_uids=include_uids))
        views[view] = reports
    per_image = [image_fields(r.header or {}, r.image.rows, r.image.columns, r.image.tissue_mean)
                 for reports in views.values() for r in reports if r.image is not None]
    return PredictionResult(
        exam_id=exam.exam_id,
        family=family,
        model=kind,
        views=views,
        predictions=inference.predictions,
        primary_variant=inference.primary,
        outputs=inference.outputs,
        device=device,
        precision=precision,
        seed=seed,
        rng_mode=config.rng_mode,
        tta=inference.tta,
        duration_s=round(duration_s, 3),
        weights=weights,
        mammocli_version=__version__,
        warnings=warnings,
        skipped_files=[SkippedRecord(file=s.relative, reason=s.reason) for s in exam.skipped],
        header=exam_header(per_image) or None,
    )
