"""The job record kept in a Redis hash, and its JSON codec. Payloads are JSON, never pickle."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

from utils import task_types
from utils.queue import keys


class JobStatus(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


def new_job_id(task_type: str) -> str:
    return f"{task_types.get(task_type).id_prefix}-{uuid.uuid4().hex}"


def derived_job_id(task_type: str, parent_id: str) -> str:
    """The one job of ``task_type`` made from another job (a backtest's report: bt-X -> rp-X);
    enqueue is idempotent per id, so asking twice reuses it."""
    return f"{task_types.get(task_type).id_prefix}-{parent_id.split('-', 1)[-1]}"


@dataclass(frozen=True)
class JobSpec:
    """What a service asks the queue to run."""

    task_type: str
    payload: dict[str, Any]
    priority: str = "normal"
    max_attempts: int = 3
    # Small searchable facts for history listings (symbols, strategy...), JSON-able.
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        task_types.get(self.task_type)  # raises UnknownTaskType (a ValueError) naming the registered ones
        if self.priority not in keys.PRIORITIES:
            raise ValueError(f"unknown priority {self.priority!r}")


@dataclass(frozen=True)
class JobRecord:
    """A job as stored in ``keys.job(id)``."""

    id: str
    task_type: str
    status: JobStatus
    priority: str
    progress: float
    attempts: int
    max_attempts: int
    created_at: float
    enqueued_at: float
    started_at: float | None
    finished_at: float | None
    error: str
    owner: str  # the worker holding it now (empty unless RUNNING)
    device: str
    cancel_requested: bool
    payload: dict[str, Any]
    meta: dict[str, Any]
    progress_detail: dict[str, Any] = field(default_factory=dict)  # e.g. trees done, validation loss
    worker: str = ""  # the worker that ran its latest attempt (kept after it finished)

    @classmethod
    def from_hash(cls, fields: Mapping[str, str]) -> "JobRecord":
        def number(name: str, default: float | None = None) -> float | None:
            value = fields.get(name)
            return float(value) if value not in (None, "") else default

        return cls(
            id=fields["id"],
            task_type=fields["type"],
            status=JobStatus(fields["status"]),
            priority=fields.get("priority", "normal"),
            progress=number("progress", 0.0) or 0.0,
            attempts=int(fields.get("attempts") or 0),
            max_attempts=int(fields.get("max_attempts") or 3),
            created_at=number("created_at", 0.0) or 0.0,
            enqueued_at=number("enqueued_at", 0.0) or 0.0,
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            error=fields.get("error", ""),
            owner=fields.get("owner", ""),
            device=fields.get("device", ""),
            cancel_requested=fields.get("cancel_requested") == "1",
            payload=json.loads(fields.get("payload") or "{}"),
            meta=json.loads(fields.get("meta") or "{}"),
            progress_detail=json.loads(fields.get("progress_detail") or "{}"),
            worker=fields.get("worker", ""),
        )


def initial_hash(job_id: str, spec: JobSpec, now: float | None = None) -> dict[str, str]:
    """Fields written at enqueue; the others start empty (``JobRecord.from_hash`` defaults)."""
    now = time.time() if now is None else now
    return {
        "id": job_id,
        "type": spec.task_type,
        "status": JobStatus.PENDING.value,
        "priority": spec.priority,
        "attempts": "0",
        "max_attempts": str(spec.max_attempts),
        "created_at": repr(now),
        "enqueued_at": repr(now),
        "payload": json.dumps(spec.payload, separators=(",", ":")),
        "meta": json.dumps(spec.meta, separators=(",", ":")),
    }


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to a worker: which job, from which stream entry."""

    stream: str
    msg_id: str
    job_id: str

    @property
    def task_type(self) -> str:
        return self.stream.split(":")[2]

    @property
    def priority(self) -> str:
        return self.stream.split(":")[3]
