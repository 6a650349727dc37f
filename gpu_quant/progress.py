"""A progress bar for a job, fed by JobService.WatchJob states (rich, on stderr)."""
from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn


def detail_text(job: dict[str, Any]) -> str:
    """'120/500 trees, validation_loss 0.41' from a job's progress_detail JSON."""
    try:
        detail = json.loads(job.get("progress_detail") or "{}")
    except ValueError:
        return ""
    if not isinstance(detail, dict):
        return ""
    parts = []
    if "done" in detail and "total" in detail:
        parts.append(f"{detail['done']}/{detail['total']} {detail.get('unit', '')}".rstrip())
    parts += [f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
              for key, value in detail.items() if key not in ("done", "total", "unit") and not isinstance(value, (dict, list))]
    return ", ".join(parts[:3])


class JobProgress:
    """Context manager: `update(job_dict)` moves the bar; nothing is drawn when disabled."""

    def __init__(self, job_id: str, enabled: bool = True, console: Console | None = None) -> None:
        self.job_id = job_id
        self.enabled = enabled
        self.console = console or Console(file=sys.stderr)
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> "JobProgress":
        if self.enabled:
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                                      TimeElapsedColumn(), TextColumn("{task.fields[detail]}"),
                                      console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.job_id, total=1.0, detail="PENDING")
        return self

    def update(self, job: dict[str, Any]) -> None:
        if self._progress is None:
            return
        status = job.get("status", "")
        detail = " ".join(part for part in (status, detail_text(job)) if part)
        self._progress.update(self._task, completed=float(job.get("progress") or 0.0), detail=detail)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
