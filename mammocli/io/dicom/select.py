"""Which DICOM images of one study fill the four screening views, and why the others do not.

Rules (issue 5): keep FOR PRESENTATION 2D mammograms; drop tomosynthesis, synthesized 2D (unless
allowed), spot/magnification/other modified views, non-screening views, secondary captures and
FOR PROCESSING images (unless allowed); an implant-displaced view is used only when no standard
view exists. Several images per view are kept (the test-time augmentation draws among them),
or only the latest acquisition with `one_per_view`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...views import VIEWS, View
from ..exam import ImageSource, SkippedFile
from .options import DicomOptions
from .scan import DicomHeader
from .tags import Kind, Modifier, ViewSource

# Lower is preferred when several kinds compete for one view.
_KIND_RANK = {Kind.STANDARD: 0, Kind.SECONDARY_CAPTURE: 1, Kind.SYNTHETIC: 2,
              Kind.FOR_PROCESSING: 3}


@dataclass(frozen=True)
class Selection:
    images: dict[View, tuple[ImageSource, ...]]
    skipped: tuple[SkippedFile, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Candidate:
    header: DicomHeader
    view: View

    @property
    def rank(self) -> tuple[int, bool, bool]:
        h = self.header
        assert h.kind is not None
        implant_displaced = Modifier.IMPLANT_DISPLACED in h.view.modifiers
        return _KIND_RANK[h.kind], implant_displaced, h.partial_view

    @property
    def description(self) -> str:
        h = self.header
        assert h.kind is not None
        if h.kind is not Kind.STANDARD:
            return str(h.kind.value)
        if Modifier.IMPLANT_DISPLACED in h.view.modifiers:
            return "implant-displaced view"
        return "partial view (a tile of a large breast)"

    @property
    def recency(self) -> tuple[bool, str, int, int]:
        # Latest acquisition wins (a repeat is usually a retake), then instance number, then size.
        h = self.header
        return h.original, h.acquired, h.instance_number, h.pixels


def _allowed(header: DicomHeader, options: DicomOptions) -> tuple[str, str] | None:
    """(why, the option that admits it) when this kind of image is not used, or None."""
    if header.kind is Kind.SYNTHETIC and not options.allow_synthetic:
        return "synthesized 2D image (from tomosynthesis)", "--allow-synthetic"
    if header.kind is Kind.FOR_PROCESSING and not options.allow_for_processing:
        return "FOR PROCESSING (raw detector) image", "--allow-for-processing"
    if header.kind is Kind.SECONDARY_CAPTURE and not options.allow_secondary_capture:
        return ("secondary capture (digitised film or a screen capture)",
                "--allow-secondary-capture")
    return None


_VIEWS_CSV = "--views-csv"


def _view_of(header: DicomHeader,
             mapped: View | None) -> tuple[View | None, str | None, str | None]:
    """(view, None, None) or (None, reason, the option that would admit the file)."""
    if mapped is not None:
        return mapped, None, None
    info = header.view
    if info.side is None:
        return None, "laterality missing or not L/R (ImageLaterality, Laterality)", _VIEWS_CSV
    if info.base is None:
        return None, ("no view in ViewCodeSequence, ViewPosition, descriptions, PatientID or "
                      "the file name"), _VIEWS_CSV
    if info.angle is None:
        return None, f"{info.base} view; only CC and MLO are screening views", None
    if Modifier.SPOT in info.modifiers:
        return None, "spot compression view", None
    if Modifier.MAGNIFICATION in info.modifiers:
        return None, "magnification view", None
    if Modifier.OTHER in info.modifiers:
        return None, "modified view (rolled, tangential, cleavage, axillary tail ...)", None
    return View.of(info.side, info.angle), None, None


def candidate_view(header: DicomHeader, mapped: View | None = None) -> View | None:
    """The screening view this file is an image of, whatever the options and even when its
    pixels are broken (then it is that view's failed image): for grouping files into exams."""
    if header.kind is None:
        return None
    return _view_of(header, mapped)[0]


def select_images(headers: Sequence[DicomHeader], options: DicomOptions,
                  mapped: Mapping[Path, View] | None = None) -> Selection:
    """Apply the selection rules to the headers of one study.

    `mapped`: views given explicitly (e.g. by a views CSV), keyed by resolved file path; they
    replace the header's view but not the checks on the image kind.
    """
    mapped = mapped or {}
    skipped: list[SkippedFile] = []
    notes: list[str] = []
    by_view: dict[View, list[_Candidate]] = {v: [] for v in VIEWS}
    for h in sorted(headers, key=lambda h: h.relative):
        reason: str | None = h.problem or (h.kind_reason if h.kind is None else None)
        admit_with: str | None = None
        if reason is None and (refused := _allowed(h, options)) is not None:
            reason, admit_with = refused
        view: View | None = None
        if reason is None:
            view, reason, admit_with = _view_of(h, mapped.get(h.path.resolve()))
        if reason is not None or view is None:
            skipped.append(SkippedFile(h.relative, reason or "not usable", admit_with))
            continue
        if h.path.resolve() not in mapped and h.view.view_source in {
                ViewSource.TEXT, ViewSource.PATIENT_ID, ViewSource.FILE_NAME}:
            notes.append(f"{h.relative}: view {view} taken from the {h.view.view_source.value} "
                         "(the header has no view tags); check it or use --views-csv")
        by_view[view].append(_Candidate(h, view))

    images: dict[View, tuple[ImageSource, ...]] = {}
    for view, candidates in by_view.items():
        if candidates:
            best = min(c.rank for c in candidates)
            for c in candidates:
                if c.rank != best:
                    skipped.append(SkippedFile(
                        c.header.relative,
                        f"{c.description}; a preferred image exists for {view}"))
            candidates = [c for c in candidates if c.rank == best]
        if options.one_per_view and len(candidates) > 1:
            keep = max(candidates, key=lambda c: c.recency)
            for c in candidates:
                if c is not keep:
                    skipped.append(SkippedFile(
                        c.header.relative,
                        f"another {view} image is used (--one-per-view keeps the latest "
                        "acquisition)"))
            candidates = [keep]
        for c in candidates:
            kind = c.header.kind
            if kind is not None and kind is not Kind.STANDARD:
                notes.append(f"{c.header.relative}: {view} uses a {kind.value} "
                             "(not what the model was trained on)")
            elif Modifier.IMPLANT_DISPLACED in c.header.view.modifiers:
                notes.append(f"{c.header.relative}: {view} uses an implant-displaced view")
        images[view] = tuple(
            ImageSource(path=c.header.path, relative=c.header.relative, view=view,
                        kind="dicom", facing=c.header.facing,
                        uids=c.header.uids if options.include_uids else None,
                        header=c.header.fields)
            for c in sorted(candidates, key=lambda c: c.header.relative))
    if any(c.header.implant_present for cs in by_view.values() for c in cs):
        notes.append("breast implant present: the model was not validated on implant exams")
    skipped.sort(key=lambda s: s.relative)
    return Selection(images=images, skipped=tuple(skipped), warnings=tuple(notes))
