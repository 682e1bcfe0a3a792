"""Heatmaps as DICOM Segmentations registered to their source mammograms, and as colour
Secondary Captures in the source's geometry (issue 15).

Tolerance of the peak checks: 0 pixels. The Segmentation holds the heatmap at the source
image's own resolution (the patch average is defined per pixel; nothing is resampled), so the
only loss is the 8-bit fractional quantisation of the values (1/255): the maximal pixels of the
Segmentation are compared with the maximal pixels of the float heatmap, within that step.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from _orthanc import PHI
from dicom_factory import make_mg, save_mg, synthetic_breast, write_exam
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from mammocli.api import load_pipeline_config
from mammocli.cli.app import app
from mammocli.config import FlipMode
from mammocli.io.exam import ImageSource
from mammocli.io.load import read_view_image
from mammocli.outputs.dicom_heatmap import (
    SERIES_DESCRIPTION,
    SourceHeatmaps,
    build_heatmap_seg,
    read_heatmap_seg,
    seg_bytes,
    source_heatmaps,
    to_source_geometry,
    write_seg,
)
from mammocli.outputs.dicom_sc import (
    HUES,
    NOTICE,
    SC_SERIES_DESCRIPTION,
    build_heatmap_sc,
    heatmap_scs,
    overlay_rgb,
)
from mammocli.outputs.dicom_sr import LATERALITY
from mammocli.preprocess.prepare import PreparedImage, prepare_image
from mammocli.views import Side, View

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
runner = CliRunner()


def lesion_image(folder: Path, laterality: str, view: str, lesion: tuple[int, int],
                 ) -> tuple[Path, pydicom.Dataset]:
    """A synthetic mammogram with a bright disc (radius 5) centred at `lesion` (row, column
    of the stored image), a FrameOfReferenceUID and a PixelSpacing."""
    pixels = synthetic_breast(400, 300, laterality, seed=3)
    top = 2**12 - 1
    pixels[pixels == top] = top - 1  # the factory's full-scale pixel: the lesion is the only one
    yy, xx = np.mgrid[0:400, 0:300]
    pixels[np.hypot(yy - lesion[0], xx - lesion[1]) <= 5] = top
    ds, _ = make_mg(laterality, view, pixels=pixels)
    ds.FrameOfReferenceUID = generate_uid()
    ds.PixelSpacing = ds.ImagerPixelSpacing = [0.085, 0.085]
    path = save_mg(ds, folder / f"{laterality}_{view}.dcm")
    return path, pydicom.dcmread(path, stop_before_pixels=True)


def prepared(path: Path, view: View) -> PreparedImage:
    config = load_pipeline_config(EXAMPLES / "small_pipeline.yaml")
    source = ImageSource(path, path.name, view, kind="dicom")
    return prepare_image(read_view_image(source), FlipMode.AUTO, config)


def canonical_lesion_heatmap(image: PreparedImage) -> np.ndarray:
    """A heatmap that peaks (1.0) on the lesion as the model sees it: in the canonical crop."""
    rows, cols = np.nonzero(image.pixels == image.pixels.max())
    centre = (rows.mean(), cols.mean())
    yy, xx = np.mgrid[0:image.pixels.shape[0], 0:image.pixels.shape[1]]
    return np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / 32.0).astype(np.float32)


def peak(array: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(int(np.argmax(array)), array.shape)
    return int(row), int(col)


def reread(seg: pydicom.Dataset) -> pydicom.Dataset:
    from io import BytesIO

    return pydicom.dcmread(BytesIO(seg_bytes(seg)))


@pytest.mark.parametrize(("laterality", "view", "lesion", "flipped"), [
    ("L", "CC", (230, 70), False),   # chest wall at the left edge: canonical as stored
    ("R", "MLO", (150, 240), True),  # chest wall at the right edge: flipped for the model
])
def test_the_segmentation_puts_the_heatmap_peak_on_the_lesion_of_the_source_image(
        tmp_path: Path, laterality: str, view: str, lesion: tuple[int, int],
        flipped: bool) -> None:
    path, header = lesion_image(tmp_path, laterality, view, lesion)
    image = prepared(path, View(f"{laterality}-{view}"))
    assert image.orientation.needs_flip is flipped
    top, bottom, left, right = image.crop.window_location
    assert (top, left) != (0, 0) or (bottom, right) != (400, 300)  # a real crop to undo
    heat = canonical_lesion_heatmap(image)
    maps = SourceHeatmaps(path.name, Side(image.view.side),
                          benign=to_source_geometry(heat * 0.5, image, (400, 300)),
                          malignant=to_source_geometry(heat, image, (400, 300)))
    seg = reread(build_heatmap_seg(header, maps, algorithm="mammocli test", version="0",
                                   parameters=["variant=x"], series_uid=generate_uid(),
                                   instance_number=1))
    values = read_heatmap_seg(seg)
    # Overlaid on its source image (same pixel grid), the peak is the lesion's centre.
    assert peak(values["malignant"]) == lesion
    assert peak(values["benign"]) == lesion
    assert values["malignant"].max() == 1.0
    assert values["benign"].max() == pytest.approx(0.5, abs=1 / 255)
    # Zeros outside the crop window.
    outside = np.ones((400, 300), bool)
    outside[top:bottom, left:right] = False
    assert not values["malignant"][outside].any()


def test_the_segmentation_has_the_source_geometry_and_references_it(tmp_path: Path) -> None:
    path, header = lesion_image(tmp_path, "R", "CC", (200, 230))
    image = prepared(path, View.R_CC)
    heat = canonical_lesion_heatmap(image)
    [maps] = source_heatmaps({View.R_CC: [image]},
                             {View.R_CC: [_Maps(heat * 0.2, heat)]}, {path.name: header})
    series = generate_uid()
    seg = reread(build_heatmap_seg(header, maps, algorithm="mammocli dmv-cnn view-wise",
                                   version="9.9", parameters=["variant=image_and_heatmaps"],
                                   series_uid=series, instance_number=3))
    assert seg.SOPClassUID == SEG_CLASS and seg.SegmentationType == "FRACTIONAL"
    assert seg.SegmentationFractionalType == "PROBABILITY"
    assert (seg.Rows, seg.Columns) == (header.Rows, header.Columns)
    assert seg.FrameOfReferenceUID == header.FrameOfReferenceUID
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [float(v) for v in header.PixelSpacing]
    for frame in seg.PerFrameFunctionalGroupsSequence:
        [source] = frame.DerivationImageSequence[0].SourceImageSequence
        assert source.ReferencedSOPInstanceUID == header.SOPInstanceUID
        assert source.SpatialLocationsPreserved == "YES"
    [referenced] = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == header.SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence] == \
        [header.SOPInstanceUID]
    # A new series of the source study, patient module copied, research use said.
    assert seg.StudyInstanceUID == header.StudyInstanceUID
    assert seg.SeriesInstanceUID == series != header.SeriesInstanceUID
    assert seg.PatientID == header.PatientID and seg.InstanceNumber == 3
    assert "RESEARCH USE ONLY" in seg.SeriesDescription == SERIES_DESCRIPTION
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == ["benign probability", "malignant probability"]
    structure = seg.SegmentSequence[1].PrimaryAnatomicStructureSequence[0]
    assert structure.CodeValue == LATERALITY[Side.RIGHT].value
    values = read_heatmap_seg(seg)
    assert peak(values["malignant"]) == (200, 230)
    assert values["benign"].max() == pytest.approx(0.2, abs=1 / 255)


def hue_excess(sc: pydicom.Dataset, channel: int) -> np.ndarray:
    """How much `channel` (0 red, 1 green) of an RGB picture exceeds the other two: the heat's
    colour over a grey (R = G = B) image; 0 on grey and on the white/black burned-in text."""
    rgb = sc.pixel_array.astype(np.int32)
    others = [c for c in range(3) if c != channel]
    return rgb[..., channel] - rgb[..., others].max(axis=-1)


@pytest.mark.parametrize(("laterality", "view", "lesion", "flipped"), [
    ("L", "CC", (230, 70), False),
    ("R", "MLO", (150, 240), True),
])
def test_the_secondary_capture_has_the_source_geometry_and_its_hottest_pixel_on_the_lesion(
        tmp_path: Path, laterality: str, view: str, lesion: tuple[int, int],
        flipped: bool) -> None:
    path, header = lesion_image(tmp_path, laterality, view, lesion)
    image = prepared(path, View(f"{laterality}-{view}"))
    assert image.orientation.needs_flip is flipped
    heat = canonical_lesion_heatmap(image)
    [maps] = source_heatmaps({image.view: [image]}, {image.view: [_Maps(heat * 0.4, heat)]},
                             {path.name: header})
    series = generate_uid()
    malignant, benign = (reread(sc) for sc in heatmap_scs(
        header, maps, algorithm="mammocli dmv-cnn", version="9.9", series_uid=series,
        first_instance=5))
    for sc, number in ((malignant, 5), (benign, 6)):
        assert sc.SOPClassUID == SC_CLASS and sc.PhotometricInterpretation == "RGB"
        assert (sc.Rows, sc.Columns, sc.SamplesPerPixel) == (header.Rows, header.Columns, 3)
        assert [float(v) for v in sc.PixelSpacing] == [float(v) for v in header.PixelSpacing]
        [source] = sc.SourceImageSequence
        assert source.ReferencedSOPInstanceUID == header.SOPInstanceUID
        assert source.ReferencedSOPClassUID == header.SOPClassUID
        assert sc.StudyInstanceUID == header.StudyInstanceUID
        assert sc.SeriesInstanceUID == series != header.SeriesInstanceUID
        assert sc.PatientID == header.PatientID and sc.InstanceNumber == number
        assert sc.BurnedInAnnotation == "YES"
        assert NOTICE in sc.SeriesDescription == SC_SERIES_DESCRIPTION
        assert NOTICE in sc.ImageComments
    # Overlaid on the source (same grid), the most coloured pixel is the lesion's centre.
    red, green = hue_excess(malignant, 0), hue_excess(benign, 1)
    assert peak(red) == lesion and peak(green) == lesion
    assert red.max() > green.max() > 0  # opacity follows the probability (1.0 vs 0.4)
    assert hue_excess(malignant, 1).max() <= 0  # the malignant picture has no green heat
    # The notice is burned in at the top, on the side away from the chest wall (there the
    # source is background): the only pixels that differ from the plain overlay.
    assert maps.image is not None
    plain = overlay_rgb(maps.image, maps.malignant, HUES["malignant"])
    rows, cols = np.nonzero((malignant.pixel_array != plain).any(axis=-1))
    assert len(rows) > 100 and rows.max() < 40
    away = cols < header.Columns // 2 if flipped else cols >= header.Columns // 2
    assert away.all()
    assert (malignant.pixel_array[rows, cols] >= 250).all(axis=-1).any()  # white letters


def test_a_secondary_capture_of_the_benign_map_is_green_and_labelled(tmp_path: Path) -> None:
    path, header = lesion_image(tmp_path, "L", "MLO", (200, 60))
    image = prepared(path, View.L_MLO)
    heat = canonical_lesion_heatmap(image)
    [maps] = source_heatmaps({View.L_MLO: [image]}, {View.L_MLO: [_Maps(heat, heat * 0)]},
                             {path.name: header})
    sc = reread(build_heatmap_sc(header, maps, "benign", algorithm="mammocli", version="0",
                                 series_uid=generate_uid(), instance_number=1))
    assert "benign heatmap" in sc.ImageComments and "benign" in sc.DerivationDescription
    assert peak(hue_excess(sc, 1)) == (200, 60) and hue_excess(sc, 0).max() <= 0


def test_highdicom_rereads_the_segmentation_when_the_source_has_a_breast_thickness(
        tmp_path: Path) -> None:
    import highdicom as hd

    path, header = lesion_image(tmp_path, "L", "CC", (230, 70))
    image = prepared(path, View.L_CC)
    heat = canonical_lesion_heatmap(image)
    [maps] = source_heatmaps({View.L_CC: [image]}, {View.L_CC: [_Maps(heat * 0.5, heat)]},
                             {path.name: header})
    header.BodyPartThickness = 52
    seg = build_heatmap_seg(header, maps, algorithm="m", version="0", parameters=[],
                            series_uid=generate_uid(), instance_number=1)
    from io import BytesIO

    read = hd.seg.segread(BytesIO(seg_bytes(seg)))
    measures = read.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == 52.0
    pixels = read.get_pixels_by_source_instance([header.SOPInstanceUID], segment_numbers=[2])
    assert pixels.shape == (1, 400, 300, 1)
    assert peak(pixels[0, :, :, 0]) == (230, 70)


def test_a_heatmap_that_does_not_fit_the_header_geometry_is_refused(tmp_path: Path) -> None:
    from mammocli.errors import InputError

    path, _ = lesion_image(tmp_path, "L", "CC", (200, 60))
    image = prepared(path, View.L_CC)
    heat = canonical_lesion_heatmap(image)
    with pytest.raises(InputError, match="does not fit the crop window"):
        to_source_geometry(heat, image, (300, 200))


class _Maps:
    def __init__(self, benign: np.ndarray, malignant: np.ndarray) -> None:
        self.benign, self.malignant = benign, malignant


def test_predict_writes_segmentations_whose_peaks_match_the_saved_heatmaps_and_no_phi(
        tmp_path: Path, random_weights: Path, small_pipeline: Path) -> None:
    exam = tmp_path / "exam"
    files = write_exam(exam, rows=400, cols=300)
    for path in files.values():  # a marker in every identifying field: none may leak
        ds = pydicom.dcmread(path)
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    result = runner.invoke(app, [
        "predict", str(exam), "--weights-dir", str(random_weights), "--pipeline-config",
        str(small_pipeline), "--tta", "1", "--variants", "image-and-heatmaps",
        "-o", str(tmp_path / "r.json"), "--dicom-out", f"{tmp_path / 'dcm'}/",
        "--save-heatmaps", str(tmp_path / "heat"), "--dicom-heatmaps", "seg,sc"])
    assert result.exit_code == 0, result.stderr
    segs = sorted((tmp_path / "dcm").glob("*.seg.dcm"))
    assert len(segs) == 4 and len(list((tmp_path / "dcm").glob("*.sr.dcm"))) == 1
    scs = [pydicom.dcmread(p) for p in sorted((tmp_path / "dcm").glob("*.sc.dcm"))]
    assert len(scs) == 8
    [folder] = (tmp_path / "heat").iterdir()
    index = {entry["source"]: entry
             for entry in json.loads((folder / "heatmaps.json").read_text())["images"]}
    sops = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p.name
            for p in files.values()}
    flipped = set()
    for seg_path in segs:
        seg = pydicom.dcmread(seg_path)
        source = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0] \
            .SourceImageSequence[0].ReferencedSOPInstanceUID
        entry = index[sops[str(source)]]
        if entry["flipped"]:
            flipped.add(entry["view"])
        arrays = np.load(folder / entry["arrays"])  # the arrays behind the PNG overlay
        top, _, left, _ = entry["crop_window"]
        values = read_heatmap_seg(seg)
        pictures = {"malignant" if "malignant" in sc.ImageComments else "benign": sc
                    for sc in scs
                    if sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source}
        for name in ("benign", "malignant"):
            saved = arrays[name]
            # The overlay's maximal pixels, through the recorded crop (the .npz is already
            # in stored orientation), are the Segmentation's maximal pixels.
            expected = {(int(r) + top, int(c) + left)
                        for r, c in zip(*np.nonzero(saved >= saved.max() - 1 / 255),
                                        strict=True)}
            got = values[name]
            found = {(int(r), int(c)) for r, c in zip(*np.nonzero(got == got.max()),
                                                     strict=True)}
            assert found <= expected
            assert (peak(saved)[0] + top, peak(saved)[1] + left) in found
            # The picture's most coloured pixel: one of the overlay's maximal pixels too.
            colour = hue_excess(pictures[name], 0 if name == "malignant" else 1)
            assert peak(colour) in expected and colour.shape == got.shape
    assert flipped == {"R-CC", "R-MLO"}  # the right views were flipped for the model
    # The pictures: one new series of their own, not the Segmentations'.
    picture_series = {str(sc.SeriesInstanceUID) for sc in scs}
    seg_series = {str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID)
                  for p in segs}
    assert len(picture_series) == 1 and not picture_series & seg_series
    # Nothing identifying on the console or in the JSON.
    text = result.stdout + result.stderr + (tmp_path / "r.json").read_text()
    identifiers = [v for k, v in PHI.items() if k != "PatientSex"] + list(sops)
    assert [v for v in identifiers if v in text] == []


def test_dicom_heatmaps_none_writes_the_sr_only(tmp_path: Path, random_weights: Path,
                                                 small_pipeline: Path) -> None:
    exam = tmp_path / "exam"
    write_exam(exam, rows=400, cols=300)
    result = runner.invoke(app, [
        "predict", str(exam), "--weights-dir", str(random_weights), "--pipeline-config",
        str(small_pipeline), "--tta", "1", "--variants", "image-and-heatmaps",
        "-o", str(tmp_path / "r.json"), "--dicom-out", f"{tmp_path / 'dcm'}/",
        "--dicom-heatmaps", "none"])
    assert result.exit_code == 0, result.stderr
    assert [p.name.endswith(".sr.dcm") for p in (tmp_path / "dcm").iterdir()] == [True]


@pytest.mark.skipif(shutil.which("dcmdump") is None, reason="dcmtk's dcmdump is not installed")
def test_dcmtk_parses_the_segmentation(tmp_path: Path) -> None:
    # dciodvfy (dicom3tools), the IOD validator, is not packaged here; dcmdump's strict parse
    # (-E: stop on any parse error) at least checks the encoding another toolkit reads.
    path, header = lesion_image(tmp_path, "L", "MLO", (200, 60))
    image = prepared(path, View.L_MLO)
    heat = canonical_lesion_heatmap(image)
    [maps] = source_heatmaps({View.L_MLO: [image]}, {View.L_MLO: [_Maps(heat, heat)]},
                             {path.name: header})
    seg = build_heatmap_seg(header, maps, algorithm="mammocli", version="0", parameters=[],
                            series_uid=generate_uid(), instance_number=1)
    written = write_seg(seg, tmp_path / "x.seg.dcm")
    run = subprocess.run(["dcmdump", "-E", "-Un", str(written)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert SEG_CLASS in run.stdout and "PROBABILITY" in run.stdout
    assert "E: " not in run.stderr, run.stderr
