"""``panel_shard`` child jobs: one shard of a large feature job (a chunk of its symbols) or of a
large factor analysis (a range of its dates), run by any worker, folded by the parent.

The parent side is ``run`` (``utils.tasks.fanout.fan_out`` with this task type); the child side is
this module's handler, which computes the shard with the same code as the unsharded job
(``utils.tasks.features.panel_features``, ``utils.tasks.factor_shards.date_shard``). Children have
their own task type and so their own per-worker slots (``MAX_CONCURRENT_PANEL_SHARDS``): a parent
waiting in a ``features`` or ``factor`` slot never holds a slot its children need.
"""
from __future__ import annotations

from typing import Any, Callable

from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks import fanout

PANEL_SHARD_TYPE = "panel_shard"
ID_PREFIX = "ps"


def child_id(parent_id: str, round_name: str, index: int) -> str:
    return fanout.child_job_id(ID_PREFIX, parent_id, round_name, index)


def run(queue: Any, context: JobContext, ids: list[str], payloads: list[dict[str, Any]],
        fold: Callable[[int, dict[str, Any]], None], progress: Callable[[float], None], wait_seconds: float) -> None:
    fanout.fan_out(queue, context, PANEL_SHARD_TYPE, ids, payloads, fold, progress, wait_seconds)


def make_panel_shard_handler(resources: Any):
    from utils.tasks.factor_shards import date_shard
    from utils.tasks.features import panel_features

    def handle(context: JobContext) -> dict[str, Any]:
        kind = context.payload.get("kind")
        if kind == "features":
            return panel_features(resources, context.payload, context.progress, context.shard_scale)
        if kind == "factor":
            return date_shard(resources.bar_store, context.payload, context.progress)
        raise PermanentJobError(f"panel shard of unknown kind {kind!r} (a server of another release?)")
    return handle
