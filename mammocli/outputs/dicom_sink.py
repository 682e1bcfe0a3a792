"""`--dicom-out DIR` and `--store-back`: one DICOM SR per exam result (issue 15), as a sink of
`predict` beside the JSON one, so it follows the same rules: targets checked before the first
exam, nothing replaced without --overwrite or --resume, each SR written as its exam finishes.

With `heatmaps` on (the default, `--dicom-heatmaps seg`) and a run that computes heatmaps (the
image-and-heatmaps variant), each source image also gets a fractional Segmentation of its
benign and malignant heatmaps (`dicom_heatmap`), one new series per exam, written as
`<stem>.<n>.seg.dcm` beside the SR and sent with it. `--dicom-heatmaps sc` makes colour
Secondary Captures instead (`dicom_sc`: per image its malignant and its benign picture, one new
series per exam, `<stem>.<n>.sc.dcm`), `seg,sc` both.

The SR itself is `dicom_sr.build_sr` (highdicom is imported only when an SR is made). Its source
headers come from `headers_for` (a DICOMweb study carries them, `RetrievedStudy.headers`) or are
read from the exam folder (`read_source_headers`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, MammocliError, OutputError
from .files import write_failed
from .schema import PredictionResult
from .sinks import PlannedExam, Record, Sink, check_exam_folder

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from ..inference.predictor import ExamOutput

Headers = Callable[[PlannedExam], "Mapping[str, Dataset] | None"]
Store = Callable[["Sequence[Dataset]"], None]

SR_SUFFIX = ".sr.dcm"


class DicomHeatmaps(str, Enum):
    """`--dicom-heatmaps`: the heatmaps as fractional Segmentations, colour Secondary
    Captures, both, or not at all."""

    SEG = "seg"
    SC = "sc"
    SEG_SC = "seg,sc"
    NONE = "none"

    @property
    def seg(self) -> bool:
        return self in (DicomHeatmaps.SEG, DicomHeatmaps.SEG_SC)

    @property
    def sc(self) -> bool:
        return self in (DicomHeatmaps.SC, DicomHeatmaps.SEG_SC)


class StoreBackError(OutputError):
    """The DICOMweb server did not take an SR (after its retries): the run stops, what was
    written is kept (exit 3 as for a server that fails during retrieval; 2 for refused
    credentials)."""

    exit_code = 3


class DicomSrSink(Sink):
    """An SR per result: into `folder` (`<stem>.sr.dcm`) and/or sent with `store`."""

    option = "--dicom-out"

    def __init__(self, folder: Path | None, *, store: Store | None = None,
                 headers_for: Headers | None = None, uid_root: str | None = None,
                 overwrite: bool, resume: bool,
                 heatmaps: DicomHeatmaps | bool = DicomHeatmaps.SEG) -> None:
        self.folder = Path(folder) if folder is not None else None
        if isinstance(heatmaps, bool):  # the former on/off switch: Segmentations or nothing
            heatmaps = DicomHeatmaps.SEG if heatmaps else DicomHeatmaps.NONE
        self.heatmaps = heatmaps
        self.wants_heatmaps = heatmaps is not DicomHeatmaps.NONE
        self.outputs: dict[str, ExamOutput] = {}  # stem -> its arrays, until written
        self.store = store
        self.headers_for = headers_for
        self.uid_root = uid_root
        self.overwrite = overwrite
        self.resume = resume
        where = [f"{folder}/" if folder is not None else "", "the PACS" if store else ""]
        self.where = ", ".join(w for w in where if w)
        self.sent = 0

    def plan(self, exams: list[PlannedExam]) -> None:
        png = [p for p in exams if p.exam.problem is None and p.exam.input_kind == "png"]
        if png:
            option = "--dicom-out" if self.folder is not None else "--store-back"
            raise ConfigError(f"{option}: a DICOM SR needs DICOM images, and "
                              f"{png[0].input.folder or png[0].exam.exam_id} holds PNG files",
                              hint=f"run {option} on DICOM input only")
        if self.folder is None:
            return
        check_exam_folder(self.folder, "--dicom-out", exams, self._file, "the SR",
                          overwrite=self.overwrite, resume=self.resume,
                          hint="use --resume to skip finished exams or --overwrite to redo them")

    def _file(self, planned: PlannedExam) -> Path:
        assert self.folder is not None
        return self.folder / f"{planned.stem}{SR_SUFFIX}"

    def _sources(self, planned: PlannedExam, result: PredictionResult) -> Mapping[str, Dataset]:
        from .dicom_sr import read_source_headers

        given = self.headers_for(planned) if self.headers_for is not None else None
        if given:
            return given
        names = {image.source for images in result.views.values() for image in images}
        return read_source_headers(planned.exam.folder, sorted(names))

    def attach(self, planned: PlannedExam, output: ExamOutput) -> None:
        if self.wants_heatmaps and output.heatmaps:
            self.outputs[planned.stem] = output

    def _heatmap_objects(self, output: ExamOutput | None, result: PredictionResult,
                         sources: Mapping[str, Dataset]) -> tuple[list[Dataset], list[Dataset]]:
        """The exam's Segmentations and Secondary Captures (each kind its own new series)."""
        if output is None or not output.heatmaps:
            return [], []
        from .dicom_heatmap import build_heatmap_seg, source_heatmaps
        from .dicom_sc import MAPS, heatmap_scs
        from .dicom_sr import content_from_result, new_uid

        content = content_from_result(result)
        images = source_heatmaps(output.prepared, output.heatmaps, sources)
        segs, scs = [], []
        if self.heatmaps.seg:
            series = new_uid(self.uid_root)
            segs = [build_heatmap_seg(sources[maps.source], maps, algorithm=content.algorithm,
                                      version=content.version, parameters=content.parameters,
                                      series_uid=series, instance_number=n,
                                      uid_root=self.uid_root)
                    for n, maps in enumerate(images, 1)]
        if self.heatmaps.sc:
            series = new_uid(self.uid_root)
            for i, maps in enumerate(images):
                scs += heatmap_scs(sources[maps.source], maps, algorithm=content.algorithm,
                                   version=content.version, series_uid=series,
                                   first_instance=1 + i * len(MAPS), uid_root=self.uid_root)
        return segs, scs

    def write(self, planned: PlannedExam, record: Record) -> None:
        output = self.outputs.pop(planned.stem, None)
        if not isinstance(record, PredictionResult):
            return  # a failed exam has no findings to report
        from .dicom_heatmap import SEG_SUFFIX, write_seg
        from .dicom_sc import SC_SUFFIX
        from .dicom_sr import build_sr, write_sr

        try:
            sources = self._sources(planned, record)
            sr = build_sr(record, sources, uid_root=self.uid_root)
            segs, scs = self._heatmap_objects(output, record, sources)
        except MammocliError as exc:  # e.g. an unreadable header: this output cannot be made
            raise OutputError(f"{planned.exam.exam_id}: no DICOM output: {exc.message}",
                              exc.hint) from None
        if self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                for n, seg in enumerate(segs, 1):
                    write_seg(seg, self.folder / f"{planned.stem}.{n}{SEG_SUFFIX}")
                for n, sc in enumerate(scs, 1):
                    write_seg(sc, self.folder / f"{planned.stem}.{n}{SC_SUFFIX}")
                write_sr(sr, self.folder, planned.stem)  # last: its file marks the exam done
            except OSError as exc:
                raise write_failed(self._file(planned), exc) from None
        if self.store is not None:
            try:
                self.store([sr, *segs, *scs])
            except MammocliError as exc:
                failed = StoreBackError(f"--store-back: {exc.message}", exc.hint)
                failed.exit_code = exc.exit_code  # refused credentials stay 2
                raise failed from None
            self.sent += 1
