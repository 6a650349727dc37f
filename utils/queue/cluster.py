"""The platform's state as one read: registered workers (alive = heartbeat key present) and each
task type's queue depth. JobService.GetClusterStatus and the gateway's dashboard both answer
from it, so they never disagree."""
from __future__ import annotations

from dataclasses import dataclass

from utils.queue import keys
from utils.queue.streams import JobQueue


@dataclass(frozen=True)
class WorkerView:
    worker_id: str
    device: str
    alive: bool


@dataclass(frozen=True)
class QueueView:
    task_type: str
    waiting: int
    running: int
    dead_letters: int


@dataclass(frozen=True)
class ClusterView:
    workers: list[WorkerView]
    queues: list[QueueView]


def cluster_view(queue: JobQueue) -> ClusterView:
    """Workers sorted by id; one queue row per task type (its priorities summed), sorted by type."""
    registered = queue.redis.hgetall(keys.WORKERS)
    names = sorted(registered)
    pipe = queue.redis.pipeline(transaction=False)
    for name in names:
        pipe.exists(keys.worker_alive(name))
    alive = pipe.execute() if names else []
    depth: dict[str, list[int]] = {}
    for task_type, _priority, waiting, in_flight in queue.depth():
        row = depth.setdefault(task_type, [0, 0])
        row[0] += waiting
        row[1] += in_flight
    task_names = sorted(depth)
    pipe = queue.redis.pipeline(transaction=False)
    for task_type in task_names:
        pipe.xlen(keys.dead_letter(task_type))
    dead = pipe.execute(raise_on_error=False) if task_names else []
    return ClusterView(
        workers=[WorkerView(name, _text(registered[name]), bool(up)) for name, up in zip(names, alive)],
        queues=[QueueView(task_type, depth[task_type][0], depth[task_type][1], count if isinstance(count, int) else 0)
                for task_type, count in zip(task_names, dead)])


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
