"""DICOM discovery: any files under a folder (nested, any names; detected by content), one exam
per StudyInstanceUID; the view of each file comes from its header (see dicom_tags, dicom_select).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError, InputError
from ..views import View
from .dicom_options import DicomOptions
from .dicom_scan import DicomHeader, is_dicom_file, scan_header
from .dicom_select import select_images
from .exam import ExamSource, SkippedFile
from .walk import walk_files


def _walk_files(root: Path, exclude: list[Path],
                stray: list[tuple[Path, str]]) -> list[Path]:
    """Regular files under `root` by the rules of `walk` (hidden entries left out, links not
    followed out of the tree); what the walk left out goes to `stray` with its reason."""
    walked = walk_files(root, exclude)
    stray.extend((e.path, e.reason) for e in walked.skipped)
    return walked.files


def _short_id(uid: str) -> str:
    # Stable and non-identifying: the UID itself is PHI-adjacent (it can be looked up in a PACS).
    return "study-" + hashlib.sha1(uid.encode()).hexdigest()[:8]


def discover_dicom_exams(
    root: Path, *, options: DicomOptions | None = None, views: Mapping[str, View] | None = None,
    exclude: list[Path] | None = None,
) -> tuple[list[ExamSource], list[SkippedFile]]:
    """One ExamSource per StudyInstanceUID of the DICOM files under `root`.

    Returns (exams, unreadable files). Files that belong to no study (not DICOM, unreadable
    headers) are also listed as skipped in the exams whose folders hold them.
    """
    options = options or DicomOptions()
    root = Path(root)
    mapped: dict[Path, View] = {}
    for name, view in (views or {}).items():
        full = (root / name).resolve()
        if not full.is_file():
            raise ConfigError(f"views CSV: {name} is not a file under {root.name}")
        mapped[full] = view

    studies: dict[str, list[DicomHeader]] = {}
    stray: list[tuple[Path, str]] = []  # (path, reason): files no study can claim
    for f in _walk_files(root, exclude or [], stray):
        rel = f.relative_to(root).as_posix()
        if not is_dicom_file(f):
            stray.append((f, "not a DICOM file (no 'DICM' marker after the 128-byte preamble)"))
            continue
        try:
            header, _ = scan_header(f, rel, options.max_pixels)
        except InputError as exc:
            stray.append((f, exc.message.removeprefix(f"{rel}: ")))
            continue
        if not header.study_uid:
            reason = ("DICOMDIR index (not an image)" if f.name.upper() == "DICOMDIR" else
                      header.problem or header.kind_reason if header.kind is None else
                      "no StudyInstanceUID in the header; the file may be truncated")
            stray.append((f, reason))
            continue
        studies.setdefault(header.study_uid, []).append(header)

    # Which studies have files under each folder (up to the root): decides the exam folders.
    owners: dict[Path, set[str]] = {}
    for uid, hs in studies.items():
        for h in hs:
            for folder in (h.path.parent, *h.path.parent.parents):
                owners.setdefault(folder, set()).add(uid)
                if folder == root:
                    break
    folders: dict[str, Path] = {}
    ids: dict[str, str] = {}
    for uid, hs in studies.items():
        folder = Path(os.path.commonpath([h.path.parent for h in hs]))
        if owners[folder] == {uid}:
            # The study's folder: the highest folder (up to the root) holding only this study.
            # The root itself names the exam only when it holds nothing else.
            while folder != root and owners[folder.parent] == {uid} and (
                    folder.parent != root or (len(studies) == 1 and not exclude)):
                folder = folder.parent
            folders[uid] = folder
            ids[uid] = folder.name or folder.resolve().name or "exam"
        else:
            folders[uid] = folder
            ids[uid] = uid if options.include_uids else _short_id(uid)
    names = [ids[u] for u in folders]
    for uid in folders:  # two study folders of the same name in different places
        if names.count(ids[uid]) > 1:
            ids[uid] = f"{ids[uid]}-{_short_id(uid).removeprefix('study-')}"

    exams: list[ExamSource] = []
    for uid, headers in studies.items():
        folder = folders[uid]
        local = [replace(h, relative=h.path.relative_to(folder).as_posix()) for h in headers]
        chosen = select_images(local, options, mapped)
        extra = _stray_for(folder, folders, stray)
        exams.append(ExamSource(
            exam_id=ids[uid],
            folder=folder,
            images=chosen.images,
            skipped=tuple(sorted(chosen.skipped + extra, key=lambda s: s.relative)),
            warnings=chosen.warnings,
            input_kind="dicom",
        ))
    unreadable = [SkippedFile(p.relative_to(root).as_posix(), r) for p, r in stray]
    return sorted(exams, key=lambda e: (str(e.folder), e.exam_id)), unreadable


def _stray_for(folder: Path, folders: Mapping[str, Path],
               stray: list[tuple[Path, str]]) -> tuple[SkippedFile, ...]:
    """The stray files to report with the exam in `folder`: those whose nearest exam folder
    (deepest ancestor holding an exam) is this one; files outside every exam folder go to all."""
    result = []
    for path, reason in stray:
        holders = [f for f in folders.values() if f in path.parents]
        nearest = max(holders, key=lambda f: len(f.parts)) if holders else None
        if nearest is None or nearest == folder:
            result.append(SkippedFile(os.path.relpath(path, folder).replace(os.sep, "/"), reason))
    return tuple(result)
