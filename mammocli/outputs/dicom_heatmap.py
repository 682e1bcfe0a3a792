"""The DMV-CNN's heatmaps as DICOM a viewer overlays on the mammogram (issue 15).

Per source image one **Segmentation** (SOP class 1.2.840.10008.5.1.4.1.1.66.4), FRACTIONAL,
SegmentationFractionalType PROBABILITY, 8 bits (MaximumFractionalValue 255, so a stored value v
means a probability v/255; resolution 1/255), two segments: 1 = benign, 2 = malignant (segment
labels "benign probability" / "malignant probability", category Morphologically abnormal
structure, type Benign neoplasm / Malignant neoplasm, anatomic region Breast with the image's
laterality, algorithm identification as in the SR).

Why a Segmentation and not a Parametric Map: a mammogram is a projection image without a
patient coordinate system (no ImagePositionPatient / ImageOrientationPatient), and highdicom
0.28.2 cannot build a Parametric Map from such an image: `hd.pm.ParametricMap([mg], maps, ...,
real_world_value_mappings=[m], voi_lut_transformations=[...])` stops with `RuntimeError:
Unexpected mismatch between dimension index values in per-frames functional groups sequence
and items in the dimension index sequence`. Without a coordinate system highdicom declares a
FrameLabel dimension index (image.py, `_DimensionIndexSequence`) but, since a Parametric Map
passes its value mappings as non-indexed channels, gives the frames empty
DimensionIndexValues; `plane_positions=` is refused for such a source ("may not be
specified"), and making up an ImagePositionPatient would invent a geometry. A
Segmentation of a 2D image is the path highdicom and the viewers (OHIF's and the Stone Web
Viewer's DICOM SEG support) handle, referenced to its source image frame by frame.

Registration: the Segmentation has the source image's Rows and Columns, its PixelSpacing (when
the source has one), its FrameOfReferenceUID (when it has one), and references it in the
SourceImageSequence of its frames (SpatialLocationsPreserved YES) and the
ReferencedSeriesSequence. The heatmap, computed on the crop in canonical orientation, is
flipped back when the image was flipped and placed at the crop window; zeros outside it.

One new series per exam (SeriesDescription says "RESEARCH USE ONLY"), UIDs from
MAMMOCLI_UID_ROOT or highdicom's, patient and study modules copied from the source by highdicom.
Identifiers belong in this object (it is for the PACS); never log its content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Protocol

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from ..errors import InputError
from ..preprocess.orientation import to_canonical
from ..preprocess.prepare import PreparedImage
from ..views import Side, View
from .dicom_sr import BREAST, LATERALITY, MANUFACTURER, _quiet_highdicom, _with_type2, new_uid
from .files import atomic_write_bytes

SERIES_DESCRIPTION = "mammocli heatmaps - RESEARCH USE ONLY"
SERIES_NUMBER = 9902
MAX_FRACTIONAL = 255
SEG_SUFFIX = ".seg.dcm"
CATEGORY = Code("49755003", "SCT", "Morphologically abnormal structure")
SEGMENTS = (  # (number, label, segmented property type)
    (1, "benign probability", Code("3898006", "SCT", "Benign neoplasm")),
    (2, "malignant probability", Code("86049000", "SCT", "Malignant neoplasm")),
)
LABELS = {1: "benign", 2: "malignant"}


class Maps(Protocol):
    """An image's heatmaps (`inference.heatmaps.Heatmaps`): canonical crop orientation."""

    @property
    def benign(self) -> np.ndarray: ...
    @property
    def malignant(self) -> np.ndarray: ...


@dataclass(frozen=True)
class SourceHeatmaps:
    """One image's heatmaps in the geometry of its stored source image."""

    source: str  # file name relative to the exam folder
    side: Side
    benign: np.ndarray  # float32, (Rows, Columns) of the source, 0 outside the crop
    malignant: np.ndarray
    image: np.ndarray | None = None  # the crop the model read, same grid (for pictures)
    chest_wall_right: bool = False  # as stored: the image was flipped for the model


def to_source_geometry(heatmap: np.ndarray, image: PreparedImage,
                       shape: tuple[int, int]) -> np.ndarray:
    """A heatmap of the canonical crop of `image` on the stored image's pixel grid `shape`:
    the flip undone (to_canonical is an involution), placed at the crop window, zeros around."""
    top, bottom, left, right = image.crop.window_location
    if heatmap.shape != (bottom - top, right - left) or bottom > shape[0] or right > shape[1]:
        raise InputError(f"{image.source.relative}: the heatmap {heatmap.shape} does not fit "
                         f"the crop window {image.crop.window_location} of a "
                         f"{shape[0]}x{shape[1]} image",
                         hint="the DICOM header's Rows/Columns differ from the decoded image")
    full = np.zeros(shape, dtype=np.float32)
    full[top:bottom, left:right] = to_canonical(heatmap, image.orientation)
    return full


def source_heatmaps(prepared: Mapping[View, Sequence[PreparedImage]],
                    heatmaps: Mapping[View, Sequence[Maps]],
                    sources: Mapping[str, Dataset]) -> list[SourceHeatmaps]:
    """Every image's heatmaps (`ExamOutput.prepared` / `.heatmaps`) on its source's grid."""
    out = []
    for view, images in prepared.items():
        for image, maps in zip(images, heatmaps[view], strict=True):
            name = image.source.relative
            if name not in sources:
                raise InputError(f"{name}: no DICOM header for this image; DICOM heatmaps can "
                                 "only be made for DICOM input")
            header = sources[name]
            shape = (int(header.Rows), int(header.Columns))
            out.append(SourceHeatmaps(
                name, image.view.side,
                to_source_geometry(maps.benign, image, shape),
                to_source_geometry(maps.malignant, image, shape),
                to_source_geometry(image.pixels, image, shape),
                image.orientation.needs_flip))
    return out


def build_heatmap_seg(source: Dataset, maps: SourceHeatmaps, *, algorithm: str, version: str,
                      parameters: Sequence[str], series_uid: str, instance_number: int,
                      uid_root: str | None = None) -> Dataset:
    """The fractional Segmentation of one image's heatmaps (see the module docstring)."""
    _quiet_highdicom()
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm, version=version, family=codes.DCM.ArtificialIntelligence,
        parameters={f"p{i}": p for i, p in enumerate(parameters, 1)} or None)
    region = hd.sr.CodedConcept(BREAST.value, BREAST.scheme_designator, BREAST.meaning)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=CATEGORY,
            segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_id, anatomic_regions=[region],
            primary_anatomic_structures=[_with_laterality(maps.side)])
        for number, label, kind in SEGMENTS]
    stack = np.stack([maps.benign, maps.malignant], axis=-1)[None]  # (1, rows, cols, segments)
    seg = hd.seg.Segmentation(
        source_images=[_with_type2(source)],
        pixel_array=np.clip(stack, 0.0, 1.0).astype(np.float32),
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        segment_descriptions=descriptions, series_instance_uid=series_uid,
        series_number=SERIES_NUMBER, sop_instance_uid=new_uid(uid_root),
        instance_number=instance_number, manufacturer=MANUFACTURER,
        manufacturer_model_name=algorithm, software_versions=version,
        device_serial_number="0", fractional_type=hd.seg.SegmentationFractionalTypeValues.
        PROBABILITY, max_fractional_value=MAX_FRACTIONAL,
        series_description=SERIES_DESCRIPTION, content_label="HEATMAPS",
        content_description="mammocli patch-classifier heatmaps", omit_empty_frames=False,
        pixel_measures=_pixel_measures(source))
    return seg


def _pixel_measures(source: Dataset) -> hd.PixelMeasuresSequence | None:
    """PixelSpacing with SliceThickness = the compressed breast thickness (BodyPartThickness:
    what the projection integrates over), so that highdicom can re-read the Segmentation
    (`hd.seg.segread` wants SliceThickness, which the standard only asks of volumes). Without
    both in the source, highdicom's default (PixelSpacing alone) is kept."""
    spacing, thickness = source.get("PixelSpacing"), source.get("BodyPartThickness")
    if not spacing or thickness is None or float(thickness) <= 0:
        return None
    return hd.PixelMeasuresSequence(pixel_spacing=(float(spacing[0]), float(spacing[1])),
                                    slice_thickness=float(thickness))


def _with_laterality(side: Side) -> hd.sr.CodedConcept:
    code = LATERALITY[side]
    return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning)


def read_heatmap_seg(seg: Dataset) -> dict[str, np.ndarray]:
    """Back from a Segmentation made by `build_heatmap_seg`: {"benign", "malignant"} -> float
    array (Rows, Columns) in 0..1, with pydicom only (highdicom 0.28 re-reads one only when
    the source had a BodyPartThickness, see `_pixel_measures`)."""
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), int(seg.Rows), int(seg.Columns))
    out = {}
    for index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out[LABELS[number]] = frames[index].astype(np.float32) / float(seg.MaximumFractionalValue)
    return out


def seg_bytes(seg: Dataset) -> bytes:
    buffer = BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_seg(seg: Dataset, path: Path) -> Path:
    atomic_write_bytes(path, seg_bytes(seg))
    return path
