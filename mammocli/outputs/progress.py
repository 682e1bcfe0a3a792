"""`predict --progress-json FILE`: machine-readable progress for dashboards (issue 16).

One JSON object per line, appended and flushed as each exam finishes:

    {"event": "exam", "exam_id": "e3", "status": "ok", "done": 3, "total": 50, "ok": 2,
     "failed": 1, "skipped": 0, "elapsed_s": 12.5, "exams_per_s": 0.24, "eta_s": 195.8}

`status` is ok, failed or skipped (another run has it); `done` counts all three. A last line
`{"event": "summary", ...}` gives the run's totals, its time per stage and the device utilisation
(`utilisation`: cpu, cpu_s, cpus, gpu, gpu_from, gpu_peak_memory_bytes). Exam ids are the
results' ids (folder names or `study-<hash>`), never a header value. A file that exists is
appended to (one per task, or one shared by a task's reruns); `-` is not accepted: stdout holds
the results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from .files import check_file_target, write_failed
from .schema import printable


class ProgressLog:
    """Appends one line per finished exam to `path`; `close` writes the summary line."""

    def __init__(self, path: Path, total: int, *, already_done: int = 0) -> None:
        self.path = Path(path)
        check_file_target(self.path, "--progress-json", overwrite=False, append=True)
        self.total = total
        self.counts = {"ok": 0, "failed": 0, "skipped": 0}
        self.already_done = already_done
        self.started = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise write_failed(self.path, exc) from None

    def _write(self, doc: Mapping[str, Any]) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(doc, ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as exc:
            raise write_failed(self.path, exc) from None

    def exam(self, exam_id: str, status: str) -> None:
        self.counts[status] += 1
        done = sum(self.counts.values())
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else None
        left = max(self.total - done, 0)
        self._write({
            "event": "exam", "exam_id": printable(exam_id), "status": status, "done": done,
            "total": self.total, **self.counts, "elapsed_s": round(elapsed, 3),
            "exams_per_s": round(rate, 4) if rate else None,
            "eta_s": round(left / rate, 1) if rate else None,
        })

    def close(self, stages: Mapping[str, float] | None = None,
              elapsed_s: float | None = None, *,
              utilisation: Any = None) -> None:
        """`utilisation`: the run's `inference.utilisation.Utilisation` (a dataclass)."""
        if self._file is None:
            return
        elapsed = elapsed_s if elapsed_s is not None else time.monotonic() - self.started
        computed = self.counts["ok"] + self.counts["failed"]
        self._write({
            "event": "summary", "total": self.total, **self.counts,
            "already_done": self.already_done, "elapsed_s": round(elapsed, 3),
            "exams_per_s": round(computed / elapsed, 4) if computed and elapsed else None,
            "stages_s": {k: round(v, 3) for k, v in (stages or {}).items()},
            # CPU (and GPU) busy fractions and peak device memory: inference.utilisation
            **({"utilisation": asdict(utilisation)} if utilisation is not None else {}),
        })
        self._file.close()
        self._file = None
