"""The DMV-CNN's heatmaps as colour pictures for any viewer: RGB Secondary Captures (issue 15).

Per source image two Secondary Capture Images (SOP class 1.2.840.10008.5.1.4.1.1.7, RGB, 8
bits): the malignant heatmap in red and the benign one in green, each over the grey image. Two
objects rather than one picture side by side, so that each keeps the source's Rows and Columns
and a viewer can hang it next to (or link it with) the mammogram pixel for pixel.

Colouring: the grey image (the cropped region the model read, placed back at its crop window,
orientation undone; background black outside it) windowed as the PNG overlays window it
(`heatmaps.grey_limits`), the heat blended over it with an opacity proportional to the
probability (0 = the tissue unveiled, 1 = ALPHA_MAX of the pure hue). Unlike the PNG overlay's
ramp, which saturates at ALPHA_FULL_AT, the opacity here rises up to the maximum, so the most
coloured pixel is the heatmap's peak.

"RESEARCH USE ONLY" and what the picture shows are burned in (white on a black outline) at the
top of the image, on the side away from the chest wall (where a mammogram is background), and
said again in SeriesDescription; BurnedInAnnotation YES. Patient and study are copied from the
source by highdicom, the picture is a new series of the study (UIDs from MAMMOCLI_UID_ROOT or
highdicom's), and SourceImageSequence references the source instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from .dicom_heatmap import SourceHeatmaps
from .dicom_sr import MANUFACTURER, _quiet_highdicom, _with_type2, new_uid
from .heatmaps import ALPHA_MAX, grey_limits

Map = Literal["malignant", "benign"]
MAPS: tuple[Map, ...] = ("malignant", "benign")
SC_SERIES_DESCRIPTION = "mammocli heatmap pictures - RESEARCH USE ONLY"
SC_SERIES_NUMBER = 9903
SC_SUFFIX = ".sc.dcm"
NOTICE = "RESEARCH USE ONLY"
HUES: dict[Map, tuple[int, int, int]] = {"malignant": (255, 0, 0), "benign": (0, 255, 0)}


def overlay_rgb(grey: np.ndarray, heat: np.ndarray, hue: tuple[int, int, int]) -> np.ndarray:
    """(rows, cols, 3) uint8: `grey` windowed to 0..255 with `heat` (0..1) blended over it in
    `hue` at opacity heat * ALPHA_MAX (strictly rising: the peak stays the most coloured)."""
    low, high = grey_limits(grey)
    shade = np.clip((grey.astype(np.float32) - low) / max(high - low, 1e-6), 0.0, 1.0) * 255.0
    alpha = (np.clip(heat, 0.0, 1.0) * ALPHA_MAX).astype(np.float32)[..., None]
    colour = np.asarray(hue, np.float32)
    rgb = shade[..., None] * (1.0 - alpha) + colour * alpha
    out: np.ndarray = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out


def burn_in(rgb: np.ndarray, lines: Sequence[str], *, chest_wall_right: bool) -> np.ndarray:
    """`lines` written into a copy of `rgb`, top corner away from the chest wall."""
    from PIL import Image, ImageDraw, ImageFont

    rows, cols = rgb.shape[:2]
    size = max(10, min(rows, cols * 2) // 40)
    font = ImageFont.load_default(size=size)
    picture = Image.fromarray(rgb, mode="RGB")
    draw = ImageDraw.Draw(picture)
    stroke = max(1, size // 10)
    margin = size // 2
    y = margin
    for line in lines:
        left, top, right, bottom = draw.textbbox((0, 0), line, font=font, stroke_width=stroke)
        x = margin if chest_wall_right else cols - margin - (right - left)
        draw.text((x - left, y - top), line, fill=(255, 255, 255), font=font,
                  stroke_width=stroke, stroke_fill=(0, 0, 0))
        y += (bottom - top) + margin // 2
    return np.asarray(picture, np.uint8)


def build_heatmap_sc(source: Dataset, maps: SourceHeatmaps, which: Map, *, algorithm: str,
                     version: str, series_uid: str, instance_number: int,
                     uid_root: str | None = None) -> Dataset:
    """The colour Secondary Capture of one of an image's heatmaps (see the module docstring).
    `maps.image` is the grey picture in the source's geometry (`source_heatmaps` fills it)."""
    _quiet_highdicom()
    heat = maps.malignant if which == "malignant" else maps.benign
    grey = maps.image if maps.image is not None else np.zeros_like(heat)
    label = f"{algorithm} {which} heatmap"
    rgb = burn_in(overlay_rgb(grey, heat, HUES[which]), [NOTICE, f"{which} heatmap"],
                  chest_wall_right=maps.chest_wall_right)
    header = _with_type2(source)
    orientation = header.get("PatientOrientation") or None
    spacing = header.get("PixelSpacing") or header.get("ImagerPixelSpacing")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header, pixel_array=rgb, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT", series_instance_uid=series_uid,
        series_number=SC_SERIES_NUMBER, sop_instance_uid=new_uid(uid_root),
        instance_number=instance_number, manufacturer=MANUFACTURER,
        # highdicom's annotation says tuple[int, int]; the standard's DS values are floats
        pixel_spacing=cast("tuple[int, int]", (float(spacing[0]), float(spacing[1])))
        if spacing else None,
        laterality=header.get("ImageLaterality") or header.get("Laterality") or None,
        patient_orientation=tuple(orientation) if orientation and len(orientation) == 2
        else None,
        transfer_syntax_uid="1.2.840.10008.1.2.1")
    sc.SeriesDescription = SC_SERIES_DESCRIPTION
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = f"{label}, {NOTICE}"
    sc.DerivationDescription = (f"{which} heatmap of {algorithm} {version} over the source "
                                "image, same pixel grid")
    sc.ManufacturerModelName = algorithm
    sc.SoftwareVersions = version
    reference = Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    reference.SpatialLocationsPreserved = "YES"
    sc.SourceImageSequence = [reference]
    return sc


def heatmap_scs(source: Dataset, maps: SourceHeatmaps, *, algorithm: str, version: str,
                series_uid: str, first_instance: int, uid_root: str | None = None,
                ) -> list[Dataset]:
    """Both pictures of one image (malignant, benign), numbered from `first_instance`."""
    return [build_heatmap_sc(source, maps, which, algorithm=algorithm, version=version,
                             series_uid=series_uid, instance_number=first_instance + i,
                             uid_root=uid_root)
            for i, which in enumerate(MAPS)]
