"""Laterality, view and facing resolution from DICOM headers."""

from __future__ import annotations

import pytest
from dicom_factory import BREAST_TOMO, MG_FOR_PROCESSING, SECONDARY_CAPTURE, make_mg

from mammocli.io.dicom.tags import (
    Kind,
    Modifier,
    ViewSource,
    facing_from_orientation,
    image_kind,
    parse_view_position,
    resolve_laterality,
    resolve_view,
)
from mammocli.views import Angle, Side


@pytest.mark.parametrize("text, base, modifiers", [
    ("CC", "CC", set()),
    ("MLO", "MLO", set()),
    ("ML", "ML", set()),  # medio-lateral, not a magnified L-something, and not MLO
    ("LM", "LM", set()),
    ("MCC", "CC", {Modifier.MAGNIFICATION}),
    ("MMLO", "MLO", {Modifier.MAGNIFICATION}),
    ("SCC", "CC", {Modifier.SPOT}),
    ("CC ID", "CC", {Modifier.IMPLANT_DISPLACED}),
    ("MLOID", "MLO", {Modifier.IMPLANT_DISPLACED}),
    ("L MLO", "MLO", set()),
    ("RCC", "CC", set()),
    ("XCCL", "XCCL", set()),
    ("", None, set()),
    ("FOO", None, set()),
])
def test_parse_view_position(text: str, base: str | None, modifiers: set[Modifier]) -> None:
    assert parse_view_position(text) == (base, frozenset(modifiers))


@pytest.mark.parametrize("tag", ["image", "series", "frame"])
def test_laterality_fallbacks(tag: str) -> None:
    ds, _ = make_mg("R", "CC", laterality_tag=tag)
    assert resolve_laterality(ds)[0] is Side.RIGHT


def test_laterality_both_or_missing() -> None:
    ds, _ = make_mg("B", "CC")
    assert resolve_laterality(ds) == (None, "B")
    ds, _ = make_mg(None, "CC", orientation=False)
    assert resolve_laterality(ds) == (None, "")


@pytest.mark.parametrize("scheme", ["sct", "srt", "snm3"])
def test_view_code_sequence_schemes(scheme: str) -> None:
    ds, _ = make_mg("L", "MLO", view_tags=scheme, view_position="")
    info = resolve_view(ds, "IM0001")
    assert (info.side, info.angle, info.view_source) == (Side.LEFT, Angle.MLO, ViewSource.CODE)


def test_view_code_wins_over_position_but_ml_is_not_mlo() -> None:
    ds, _ = make_mg("L", "ML")
    info = resolve_view(ds, "x")
    assert info.base == "ML" and info.angle is None


def test_view_position_fallback() -> None:
    ds, _ = make_mg("R", "MLO", view_tags="position")
    info = resolve_view(ds, "IM0002")
    assert (info.angle, info.view_source) == (Angle.MLO, ViewSource.POSITION)


def test_series_description_and_file_name_fallbacks() -> None:
    ds, _ = make_mg(None, None, series_description="R MLO", orientation=False)
    info = resolve_view(ds, "IM0003")
    assert (info.side, info.angle, info.view_source) == (Side.RIGHT, Angle.MLO, ViewSource.TEXT)
    ds, _ = make_mg("L", None, laterality_tag="series")
    info = resolve_view(ds, "Mass-Test_P_00173_LEFT_CC.dcm")
    assert (info.side, info.angle, info.view_source) == (Side.LEFT, Angle.CC,
                                                         ViewSource.FILE_NAME)
    ds, _ = make_mg("R", None, laterality_tag="series", orientation=False)
    ds.PatientID = "Mass-Test_P_00173_RIGHT_MLO"  # CBIS-DDSM
    info = resolve_view(ds, "1-1.dcm")
    assert (info.side, info.angle, info.view_source) == (Side.RIGHT, Angle.MLO,
                                                         ViewSource.PATIENT_ID)
    ds, _ = make_mg(None, None, orientation=False)
    assert resolve_view(ds, "IM0004").base is None


@pytest.mark.parametrize("modifier, expected", [
    ("spot", Modifier.SPOT), ("mag", Modifier.MAGNIFICATION),
    ("implant", Modifier.IMPLANT_DISPLACED), ("rolled", Modifier.OTHER),
])
def test_coded_modifiers(modifier: str, expected: Modifier) -> None:
    ds, _ = make_mg("L", "CC", modifiers=[modifier])
    assert expected in resolve_view(ds, "x").modifiers


def test_facing() -> None:
    assert facing_from_orientation(make_mg("L", "CC")[0]) is Side.RIGHT
    assert facing_from_orientation(make_mg("R", "MLO")[0]) is Side.LEFT
    ds, _ = make_mg("L", "CC", orientation=False)
    assert facing_from_orientation(ds) is None
    ds.PatientOrientation = "CC"  # CBIS-DDSM misuse
    assert facing_from_orientation(ds) is None


def test_image_kinds() -> None:
    assert image_kind(make_mg()[0])[0] is Kind.STANDARD
    assert image_kind(make_mg(sop_class=MG_FOR_PROCESSING)[0])[0] is Kind.FOR_PROCESSING
    assert image_kind(make_mg(sop_class=SECONDARY_CAPTURE)[0])[0] is Kind.SECONDARY_CAPTURE
    assert image_kind(make_mg(sop_class=BREAST_TOMO)[0]) == (None, "breast tomosynthesis volume")
    synthetic = make_mg(image_type=("DERIVED", "PRIMARY", "TOMOSYNTHESIS", "GENERATED_2D"))[0]
    assert image_kind(synthetic)[0] is Kind.SYNTHETIC
    cview = make_mg(series_description="R CC C-View")[0]
    assert image_kind(cview)[0] is Kind.SYNTHETIC
    projection = make_mg(image_type=("ORIGINAL", "PRIMARY", "TOMO_PROJ"))[0]
    assert image_kind(projection)[0] is None
    capture = make_mg(image_type=("DERIVED", "SECONDARY", ""))[0]
    assert image_kind(capture)[0] is None
