"""`evaluate --report`: one self-contained HTML file of an evaluation, readable offline.

Inline CSS, figures as base64 PNG data URIs, no script and no external reference, so the file can
be mailed or archived and opens the same anywhere. Every string that comes from the user's files
(exam ids, column names and values, file names, warnings) is escaped with `html.escape`.

Sections, each present when its input is given: the evaluation (AUROC/AUPRC with CIs at breast
and exam level, fixed thresholds, `--by` subgroups, ROC and PR figures), the calibration
(Brier/ECE before and after, reliability diagram), the operating points, and the shift report
(subgroup table, warnings, forest plot).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..outputs.files import atomic_write_text
from .calibration import CalibrationReport
from .calibration_plots import reliability_png
from .curves import ReaderPoint, ScoredCases, figure_png, pr_figure, roc_figure, summarize
from .evaluation import Evaluated
from .metrics import Estimate
from .operating_points import OperatingPoint
from .shift import ShiftReport, forest_png

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;
max-width:72em;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:2em}.meta{color:#555}table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f2f2f2}
td.l,th.l{text-align:left}caption{text-align:left;font-weight:600;padding:.3em 0}
.figs{display:flex;flex-wrap:wrap;gap:1em}.figs img{max-width:100%;height:auto;
border:1px solid #eee}ul.warn li{color:#8a2b00}tr.flag td{background:#fde8e4}
p.note{color:#555;font-size:.9em}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _est(e: Estimate | None, digits: int = 3) -> str:
    if e is None:
        return "-"
    if e.ci_low is None or e.ci_high is None:
        return f"{e.estimate:.{digits}f}"
    return f"{e.estimate:.{digits}f} [{e.ci_low:.{digits}f}, {e.ci_high:.{digits}f}]"


def _opt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def _table(caption: str, header: Sequence[str], rows: Sequence[Sequence[str]],
           left: int = 1, flagged: Sequence[bool] | None = None) -> str:
    """Cells must already be escaped; the first `left` columns align left (labels)."""
    def cls(i: int) -> str:
        return ' class="l"' if i < left else ""

    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(header))
    body = []
    for j, row in enumerate(rows):
        mark = ' class="flag"' if flagged is not None and flagged[j] else ""
        body.append(f"<tr{mark}>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row))
                    + "</tr>")
    return (f"<table><caption>{_e(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _warnings(items: Sequence[str]) -> str:
    if not items:
        return ""
    return '<ul class="warn">' + "".join(f"<li>{_e(w)}</li>" for w in items) + "</ul>"


@dataclass(frozen=True)
class ReportInputs:
    """What goes into the report: the objects the library functions return."""

    evaluation: Evaluated | None = None
    calibration: CalibrationReport | None = None
    operating_points: Sequence[OperatingPoint] = ()
    # where the points came from, e.g. a site file's thresholds measured on these labels
    operating_points_note: str = ""
    fitted_points: Sequence[OperatingPoint] = ()  # the same points where the site was fitted
    shift: ShiftReport | None = None
    readers: Sequence[ReaderPoint] = ()  # exam-level radiologists' reads, beside the model
    sources: dict[str, str] = field(default_factory=dict)  # e.g. {"predictions": "run.jsonl"}


def evaluation_cases(ev: Evaluated, ops: Sequence[OperatingPoint] = ()) -> list[ScoredCases]:
    """The curves of an evaluation: each task at breast level, then at exam level (an exam's
    score is its higher breast), resampled by exam; the malignant curves carry `ops`."""
    cases = []
    exams = [k[0] for k in ev.keys]
    for task in ev.scores:
        cases.append(ScoredCases(f"breast {task}", ev.labels[task], ev.scores[task], exams,
                                 [o for o in ops if o.level == "breast"] if task == "malignant"
                                 else ()))
    exam_ids = sorted(set(exams))
    for task in ev.scores:
        ye, se = ev.exam_level(task)
        cases.append(ScoredCases(f"exam {task}", ye, se, exam_ids,
                                 [o for o in ops if o.level == "exam"] if task == "malignant"
                                 else ()))
    return cases


def _evaluation_section(ev: Evaluated, ops: Sequence[OperatingPoint],
                        readers: Sequence[ReaderPoint]) -> str:
    r = ev.report
    parts = ["<h2>Evaluation</h2>",
             f'<p class="meta">model scores: {_e(r.model_source)}; {r.ci_level:.0%} CIs from '
             f"{r.n_bootstrap} exam-level bootstrap resamples (seed {r.seed}).</p>"]
    rows = []
    for level, by_task in (("breast", r.breast_level), ("exam", r.exam_level)):
        for task, m in by_task.items():
            rows.append([_e(level), _e(task), str(m.n), str(m.n_positive), _est(m.auroc),
                         _est(m.auprc), str(m.resamples_skipped)])
    parts.append(_table("AUROC and AUPRC", ["level", "task", "n", "positive", "AUROC [CI]",
                                            "AUPRC [CI]", "resamples skipped"], rows, left=2))
    th_rows = []
    for level, by_task in (("breast", r.breast_level), ("exam", r.exam_level)):
        for task, m in by_task.items():
            for t in m.thresholds:
                th_rows.append([_e(level), _e(task), f"{t.threshold:g}", _opt(t.sensitivity),
                                _opt(t.specificity), str(t.tp), str(t.fp), str(t.tn),
                                str(t.fn)])
    if th_rows:
        parts.append(_table("fixed thresholds (positive when score >= threshold)",
                            ["level", "task", "threshold", "sensitivity", "specificity", "TP",
                             "FP", "TN", "FN"], th_rows, left=2))
    if r.subgroups:
        parts.append(_table("subgroups (breast level, malignant)",
                            ["column", "value", "breasts", "positive", "AUROC [CI]",
                             "AUPRC [CI]", "note"],
                            [[_e(s.column), _e(s.value), str(s.n_breasts), str(s.n_positive),
                              _est(s.auroc), _est(s.auprc), _e(s.note or "")]
                             for s in r.subgroups], left=2))
    counts = [("predicted exams without labels", len(r.unlabelled_prediction_exams)),
              ("labelled exams without predictions", len(r.labelled_exams_without_predictions)),
              ("failed predictions", len(r.failed_predictions))]
    parts.append(_table("matching", ["", "exams"], [[_e(k), str(v)] for k, v in counts]))
    parts.append(_warnings([*r.warnings, *r.failed_predictions]))
    cases = evaluation_cases(ev, ops)
    summaries = [summarize(c, r.n_bootstrap, r.seed, r.ci_level) for c in cases]
    parts.append('<div class="figs">'
                 + _img(figure_png(roc_figure(summaries, "ROC", readers, r.ci_level)),
                        "ROC curves with AUC and CI")
                 + _img(figure_png(pr_figure(summaries, "precision-recall", readers,
                                             r.ci_level)),
                        "precision-recall curves with average precision and CI")
                 + "</div>")
    if readers:
        parts.append('<p class="note">radiologists: a case counts as recalled by a reader who '
                     "gave it any suspicion (score above 0).</p>")
    return "".join(parts)


def _calibration_section(c: CalibrationReport) -> str:
    rows = [["before", _est(c.before.brier, 4), _est(c.before.ece, 4)],
            [_e(f"after ({c.method})"), _est(c.after.brier, 4), _est(c.after.ece, 4)],
            ["change", _est(c.brier_change, 4), _est(c.ece_change, 4)]]
    png = reliability_png({"raw": c.before.reliability,
                           f"{c.method} (held out)": c.after.reliability}, "reliability")
    return ("<h2>Calibration</h2>"
            f'<p class="meta">{_e(c.method)}, evaluated by {_e(c.evaluated_on)}; '
            f"{c.ci_level:.0%} CIs from {c.n_bootstrap} exam resamples. Lower is better; a "
            "change below 0 is an improvement.</p>"
            + _table("Brier score and expected calibration error",
                     ["", "Brier [CI]", f"ECE, {c.n_bins} bins [CI]"], rows)
            + '<div class="figs">' + _img(png, "reliability diagram") + "</div>")


def _points_rows(ops: Sequence[OperatingPoint]) -> list[list[str]]:
    return [[_e(o.level), _e(o.target.name), _est(o.threshold, 4),
             _opt(o.calibrated_threshold, ".4f"), _est(o.sensitivity), _est(o.specificity),
             _est(o.ppv), _est(o.recall_rate), f"{o.tp}/{o.fp}/{o.tn}/{o.fn}"] for o in ops]


_POINTS_HEADER = ["level", "target", "threshold [CI]", "calibrated threshold",
                  "sensitivity [CI]", "specificity [CI]", "PPV [CI]", "recall rate [CI]",
                  "TP/FP/TN/FN"]


def _operating_points_section(ops: Sequence[OperatingPoint], note: str = "",
                              fitted: Sequence[OperatingPoint] = ()) -> str:
    meta = _e(note) if note else ("flag when score &gt;= threshold; the CIs re-choose the "
                                  "threshold in every resample, so they include its own "
                                  "uncertainty.")
    return ("<h2>Operating points</h2>"
            f'<p class="meta">{meta}</p>'
            + _table("operating points", _POINTS_HEADER, _points_rows(ops), left=2)
            + (_table("the same points where the site file was fitted", _POINTS_HEADER,
                      _points_rows(fitted), left=2) if fitted else ""))


def _shift_section(s: ShiftReport) -> str:
    rows, flags = [], []
    for g in s.subgroups:
        ns = g.negative_scores
        rows.append([_e(g.column), _e(g.value), str(g.n), str(g.n_positive), _est(g.auroc),
                     _est(g.rest_auroc), _est(g.auroc_difference),
                     "-" if ns is None else f"{ns.median:.3g} ({ns.q25:.3g}-{ns.q75:.3g})",
                     _opt(g.higher_than_rest, ".2f"), _opt(g.distribution_p, ".2g"),
                     _e(g.note or "")])
        flags.append(g.auroc_differs or g.scores_differ)
    return ("<h2>Shift report</h2>"
            f'<p class="meta">{s.n} exams, {s.n_positive} malignant; all exams: AUROC '
            f"{_est(s.auroc)}. Rule: {_e(s.rule)}.</p>"
            + (_warnings(s.warnings) if s.warnings
               else "<p>No subgroup differs from the rest beyond its CI.</p>")
            + _table("subgroups against the other exams (flagged rows shaded)",
                     ["column", "value", "exams", "malignant", "AUROC [CI]", "rest AUROC [CI]",
                      f"difference [{s.corrected_level:.2%} CI]",
                      "non-malignant median (IQR)", "P(scores higher)", "Mann-Whitney p",
                      "note"], rows, left=2, flagged=flags)
            + '<div class="figs">' + _img(forest_png(s), "subgroup forest plot") + "</div>")


def report_html(inputs: ReportInputs, title: str = "mammocli evaluation",
                created: datetime | None = None) -> str:
    """The whole report as one HTML string (no I/O)."""
    when = (created or datetime.now(timezone.utc)).replace(microsecond=0).isoformat()
    sources = "; ".join(f"{_e(k)}: {_e(v)}" for k, v in inputs.sources.items())
    body = [f"<h1>{_e(title)}</h1>",
            f'<p class="meta">mammocli {_e(__version__)}, {_e(when)}'
            + (f"; {sources}" if sources else "") + "</p>"]
    if inputs.evaluation is not None:
        body.append(_evaluation_section(inputs.evaluation, inputs.operating_points,
                                        inputs.readers))
    if inputs.calibration is not None:
        body.append(_calibration_section(inputs.calibration))
    if inputs.operating_points:
        body.append(_operating_points_section(inputs.operating_points,
                                              inputs.operating_points_note,
                                              inputs.fitted_points))
    if inputs.shift is not None:
        body.append(_shift_section(inputs.shift))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")


def write_report(path: Path, inputs: ReportInputs, title: str = "mammocli evaluation",
                 created: datetime | None = None) -> None:
    """Build the report and write it atomically (the package's one writer)."""
    atomic_write_text(path, report_html(inputs, title, created))

