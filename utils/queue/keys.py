"""Every Redis key of the job queue, in one place (as arq's constants.py does). Market data,
caches and models have theirs in ``utils/data/keys.py``.

Redis Cluster: every name starts with the hash tag ``{gq}``, so all queue keys live in one hash
slot. The state-change scripts (scripts.py) touch a job's hash, its stream, the type's counters,
dead letters and the retry set at once, and a worker blocks on all its streams in one
XREADGROUP; both need one slot. The queue is control data (about a kilobyte per job, see
docs/operations.md), so one node holds millions of jobs; the bulk data (bars, ticks, caches,
factor panels, models) is spread over the cluster by its own keys."""
from __future__ import annotations

PREFIX = "{gq}"  # a hash tag: one cluster slot for the whole queue
GROUP = "workers"  # consumer group name on every job stream

PRIORITIES = ("high", "normal", "low")  # read order


def job(job_id: str) -> str:
    """Hash: the job record (status, progress, attempts, error, payload...). The same name is
    the pub/sub channel on which its progress and final status are announced."""
    return f"{PREFIX}:job:{job_id}"


def result(job_id: str) -> str:
    """String: the job's JSON result, with a TTL."""
    return f"{PREFIX}:result:{job_id}"


def result_part(job_id: str, field: str, generation: str, index: int) -> str:
    """String: chunk ``index`` of a long list of the job's result (result_parts.py), with the
    result's TTL. Outside the queue's slot (bulk data); the job id is the hash tag, so one job's
    chunks share a slot and are fetched in one round trip."""
    return f"gq:part:{{{job_id}}}:{field}:{generation}:{index}"


def stream(task_type: str, priority: str) -> str:
    """Stream: pending and in-flight job ids of one task type and priority."""
    return f"{PREFIX}:stream:{task_type}:{priority}"


def dead_letter(task_type: str) -> str:
    """Stream: jobs that failed all their attempts."""
    return f"{PREFIX}:dead:{task_type}"


DELAYED = f"{PREFIX}:delayed"  # sorted set: job ids waiting for a retry, scored by due time


def history(task_type: str) -> str:
    """Sorted set: job ids of one task type by submission time, for history listings."""
    return f"{PREFIX}:history:{task_type}"


HISTORY_ALL = f"{PREFIX}:history"  # sorted set: every job id by submission time (ListJobs)


def stats(task_type: str) -> str:
    """Hash: monotonic counts of jobs by outcome (submitted, completed, failed...)."""
    return f"{PREFIX}:stats:{task_type}"


WORKERS = f"{PREFIX}:workers"  # hash: worker id -> JSON description, refreshed by heartbeat


def worker_alive(worker_id: str) -> str:
    """String with TTL: present while the worker heartbeats."""
    return f"{PREFIX}:worker:{worker_id}"


ALERTS = f"{PREFIX}:alerts"  # pub/sub channel: JSON alerts (risk-limit breaches...) for the WebSocket gateway
