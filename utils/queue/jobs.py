"""The job record kept in a Redis hash, and its JSON codec. Payloads are JSON, never pickle."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

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


ID_PREFIXES = {"backtest": "bt", "training": "tr", "features": "ft"}


def new_job_id(task_type: str) -> str:
    return f"{ID_PREFIXES[task_type]}-{uuid.uuid4().hex}"


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
        if self.task_type not in keys.TASK_TYPES:
            raise ValueError(f"unknown task type {self.task_type!r}")
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
    owner: str
    device: str
    cancel_requested: bool
    payload: dict[str, Any]
    meta: dict[str, Any]
    progress_detail: dict[str, Any] = field(default_factory=dict)  # e.g. trees done, validation loss

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
