"""DICOM discovery: any files under a folder (nested, any names; detected by content), grouped
into exams (by default one per StudyInstanceUID, see `GroupBy`); the view of each file comes from
its header (see dicom_tags, dicom_select).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from ...errors import ConfigError, InputError
from ...views import VIEWS, View
from ..exam import ExamProblem, ExamSource, SkippedFile
from ..walk import walk_files
from .options import DicomOptions, GroupBy
from .scan import DicomHeader, is_dicom_file, not_dicom_reason, scan_header
from .select import candidate_view, select_images


def _walk_files(root: Path, exclude: list[Path],
                stray: list[tuple[Path, str]]) -> list[Path]:
    """Regular files under `root` by the rules of `walk` (hidden entries left out, links not
    followed out of the tree); what the walk left out goes to `stray` with its reason."""
    walked = walk_files(root, exclude)
    stray.extend((e.path, e.reason) for e in walked.skipped)
    return walked.files


_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def _short_id(uid: str) -> str:
    # Stable and non-identifying: the UID itself is PHI-adjacent (it can be looked up in a PACS).
    return "study-" + hashlib.sha1(uid.encode()).hexdigest()[:8]


def is_valid_uid(uid: str) -> bool:
    """A DICOM UID: digits and dots, at most 64 characters (PS3.5 9.1). Anything else must not
    become an exam id (it could be '../../x')."""
    return len(uid) <= 64 and _UID.fullmatch(uid) is not None


@dataclass
class _Group:
    """DICOM files that form one exam, before its folder and id are decided."""

    key: str  # unique: "study:<uid>", "folder:<path>", "patient:<hash>"
    headers: list[DicomHeader]
    fallback_id: str  # the exam id when no folder holds this group alone
    warnings: list[str] = field(default_factory=list)
    problem: ExamProblem | None = None


def _study_groups(headers: list[DicomHeader], options: DicomOptions) -> list[_Group]:
    studies: dict[str, list[DicomHeader]] = {}
    for h in headers:
        studies.setdefault(h.study_uid, []).append(h)
    groups = []
    for uid, hs in studies.items():
        group = _Group(f"study:{uid}", hs, _short_id(uid))
        if options.include_uids:
            if is_valid_uid(uid):
                group.fallback_id = uid
            else:
                group.warnings.append(
                    "StudyInstanceUID is not a valid UID (digits and dots, at most 64 "
                    "characters); the exam id is a hash of it, not the UID")
        groups.append(group)
    return groups


def _within(path: Path, folder: Path) -> bool:
    return folder in path.parents


def _one_view_set(headers: list[DicomHeader], mapped: Mapping[Path, View]) -> bool:
    """True when the files give each screening view exactly once."""
    views = [candidate_view(h, mapped.get(h.path.resolve())) for h in headers]
    found = [v for v in views if v is not None]
    return sorted(found) == sorted(VIEWS)


def _merge_film_folders(groups: list[_Group], root: Path,
                        mapped: Mapping[Path, View]) -> list[_Group]:
    """--group-by auto: studies that are incomplete on their own and that one folder holds
    together as exactly one four-view set of one patient become that folder's exam."""
    def complete(g: _Group) -> bool:
        views = {candidate_view(h, mapped.get(h.path.resolve())) for h in g.headers}
        return set(VIEWS) <= views

    incomplete = [g for g in groups if not complete(g)]
    if len(incomplete) < 2:
        return groups
    group_of = {h.path: g for g in groups for h in g.headers}
    candidates: set[Path] = set()
    for g in incomplete:
        for h in g.headers:
            for folder in h.path.parents:
                candidates.add(folder)
                if folder == root:
                    break
    merged: set[str] = set()
    result: list[_Group] = []
    # Deepest folders first: the smallest folder that holds the set is the exam.
    for folder in sorted(candidates, key=lambda f: (-len(f.parts), str(f))):
        inside = [h for h in group_of if _within(h, folder)]
        members = {group_of[p].key: group_of[p] for p in inside}
        if len(members) < 2 or merged & set(members):
            continue
        if any(complete(g) or not all(_within(h.path, folder) for h in g.headers)
               for g in members.values()):
            continue
        headers = [h for g in members.values() for h in g.headers]
        if not _one_view_set(headers, mapped) or len({h.patient for h in headers}) != 1:
            continue
        merged |= set(members)
        result.append(_Group(
            f"folder:{folder}", headers, folder.name or "exam",
            warnings=[f"grouped by folder: its {len(members)} studies (StudyInstanceUIDs) hold "
                      "one four-view set of one patient, as digitised-film archives store "
                      "them (--group-by auto; use --group-by study to keep studies apart)"]))
    return result + [g for g in groups if g.key not in merged]


def _folder_groups(headers: list[DicomHeader], root: Path) -> list[_Group]:
    by_folder: dict[Path, list[DicomHeader]] = {}
    for h in headers:
        parts = h.path.relative_to(root).parts
        by_folder.setdefault(root / parts[0] if len(parts) > 1 else root, []).append(h)
    groups = []
    for folder, hs in by_folder.items():
        group = _Group(f"folder:{folder}", hs, folder.name or folder.resolve().name or "exam")
        studies, patients = {h.study_uid for h in hs}, {h.patient for h in hs}
        group.warnings.append(f"grouped by folder (--group-by folder): {len(studies)} "
                              "study(ies) in this exam")
        if len(patients) > 1:
            group.problem = ExamProblem(
                f"the folder holds images of {len(patients)} patients (PatientID differs); an "
                "exam is one patient's images",
                hint="put each patient's images in their own folder, or use --group-by study "
                     "or --group-by patient")
        groups.append(group)
    return groups


def _patient_groups(headers: list[DicomHeader]) -> list[_Group]:
    by_patient: dict[str, list[DicomHeader]] = {}
    for h in headers:
        by_patient.setdefault(h.patient, []).append(h)
    groups = []
    for key, hs in by_patient.items():
        studies = {h.study_uid for h in hs}
        # The id is a hash: a PatientID must never be shown.
        groups.append(_Group(f"patient:{key}", hs, "patient-" + key[:8], warnings=[
            f"grouped by patient (--group-by patient): {len(studies)} study(ies) in this "
            "exam"]))
    return groups


def _group(headers: list[DicomHeader], root: Path, options: DicomOptions,
           mapped: Mapping[Path, View]) -> list[_Group]:
    if options.group_by is GroupBy.FOLDER:
        return _folder_groups(headers, root)
    if options.group_by is GroupBy.PATIENT:
        return _patient_groups(headers)
    groups = _study_groups(headers, options)
    if options.group_by is GroupBy.AUTO:
        groups = _merge_film_folders(groups, root, mapped)
    return groups


Scanned = DicomHeader | tuple[Path, str]  # a file's header, or (file, why it is not used)
# map(fn, files) -> results in order; `mammocli scan` passes a process pool's map
FileMapper = Callable[[Callable[[Path], Scanned], Sequence[Path]], Iterable[Scanned]]


def scan_file(path: Path, root: Path, max_pixels: int) -> Scanned:
    """One file's header for grouping, or why the file belongs to no study."""
    rel = path.relative_to(root).as_posix()
    if not is_dicom_file(path):
        return path, not_dicom_reason(path)
    try:
        header, _ = scan_header(path, rel, max_pixels)
    except InputError as exc:
        return path, exc.message.removeprefix(f"{rel}: ")
    if not header.study_uid:
        reason = ("DICOMDIR index (not an image)" if path.name.upper() == "DICOMDIR" else
                  header.problem or header.kind_reason if header.kind is None else
                  "no StudyInstanceUID in the header; the file may be truncated")
        return path, reason
    return header


def discover_dicom_exams(
    root: Path, *, options: DicomOptions | None = None, views: Mapping[str, View] | None = None,
    exclude: list[Path] | None = None, map_files: FileMapper | None = None,
) -> tuple[list[ExamSource], list[SkippedFile]]:
    """One ExamSource per group of the DICOM files under `root` (see `GroupBy`: by default one
    per StudyInstanceUID, or per folder for digitised-film archives).

    Returns (exams, unreadable files). Files that belong to no study (not DICOM, unreadable
    headers) are also listed as skipped in the exams whose folders hold them. `map_files`
    reads the headers (default: one by one; `mammocli scan` passes a process pool's map).
    """
    options = options or DicomOptions()
    root = Path(root)
    mapped = _mapped_views(root, views or {})
    stray: list[tuple[Path, str]] = []  # (path, reason): files no study can claim
    headers = _scan(root, exclude or [], options, stray, map_files)
    groups = _group(headers, root, options, mapped)
    folders, ids = _exam_folders(groups, root, single_root=len(groups) == 1 and not exclude)
    exams: list[ExamSource] = []
    for g in groups:
        folder = folders[g.key]
        local = [replace(h, relative=h.path.relative_to(folder).as_posix()) for h in g.headers]
        chosen = select_images(local, options, mapped)
        extra = _stray_for(folder, folders, stray)
        exams.append(ExamSource(
            exam_id=ids[g.key],
            folder=folder,
            images=chosen.images,
            skipped=tuple(sorted(chosen.skipped + extra, key=lambda s: s.relative)),
            warnings=(*g.warnings, *chosen.warnings),
            input_kind="dicom",
            problem=g.problem,
        ))
    unreadable = [SkippedFile(p.relative_to(root).as_posix(), r) for p, r in stray]
    return sorted(exams, key=lambda e: (str(e.folder), e.exam_id)), unreadable


def _mapped_views(root: Path, views: Mapping[str, View]) -> dict[Path, View]:
    """The --views-csv assignments by resolved path; every file named must exist."""
    mapped: dict[Path, View] = {}
    for name, view in views.items():
        full = (root / name).resolve()
        if not full.is_file():
            raise ConfigError(f"views CSV: {name} is not a file under {root.name}")
        mapped[full] = view
    return mapped


def _scan(root: Path, exclude: list[Path], options: DicomOptions,
          stray: list[tuple[Path, str]], map_files: FileMapper | None) -> list[DicomHeader]:
    """The header of every DICOM file of a study under `root`; the other files go to `stray`
    with the reason."""
    headers: list[DicomHeader] = []
    scan = partial(scan_file, root=root, max_pixels=options.max_pixels)
    for scanned in (map_files or map)(scan, _walk_files(root, exclude, stray)):
        if isinstance(scanned, DicomHeader):
            headers.append(scanned)
        else:
            stray.append(scanned)
    return headers


def _exam_folders(groups: list[_Group], root: Path, *, single_root: bool,
                  ) -> tuple[dict[str, Path], dict[str, str]]:
    """Each group's exam folder and exam id. `single_root`: the root itself may be the exam
    folder (one group, nothing excluded)."""
    # Which groups have files under each folder (up to the root): decides the exam folders.
    owners: dict[Path, set[str]] = {}
    for g in groups:
        for h in g.headers:
            for folder in (h.path.parent, *h.path.parent.parents):
                owners.setdefault(folder, set()).add(g.key)
                if folder == root:
                    break
    folders: dict[str, Path] = {}
    ids: dict[str, str] = {}
    for g in groups:
        key = g.key
        folder = Path(os.path.commonpath([h.path.parent for h in g.headers]))
        if owners[folder] == {key}:
            # The group's folder: the highest folder (up to the root) holding only this group.
            # The root itself names the exam only when it holds nothing else.
            while folder != root and owners[folder.parent] == {key} and (
                    folder.parent != root or single_root):
                folder = folder.parent
            folders[key] = folder
            ids[key] = folder.name or folder.resolve().name or "exam"
        else:
            folders[key] = folder
            ids[key] = g.fallback_id
    names = [ids[k] for k in folders]
    for g in groups:  # two exam folders of the same name in different places
        if names.count(ids[g.key]) > 1:
            # A study keeps the suffix of its hashed id (stable across versions, for --resume).
            basis = g.key.removeprefix("study:")
            ids[g.key] = f"{ids[g.key]}-{hashlib.sha1(basis.encode()).hexdigest()[:8]}"
    return folders, ids


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
