"""One-time rename of data keys written before the Redis Cluster hash tags (utils/data/keys.py).

The model registry (``ml:model:<id>``, ``ml:models``), stored ticks (``md:ticks:<SYM>``) and the
bars built from them (``md:bars:<SYM>:<interval>``) are the platform's data: a server started
on an older store would otherwise no longer see them. Each key is renamed with RENAMENX (an
existing new key is never overwritten), so running it again, or on several servers at once, is
harmless. Single-node Redis only: a cluster was never used with the old names. Queue keys
(``gq:`` → ``{gq}:``) are not renamed: drain the queue before upgrading (docs/operations.md).
"""
from __future__ import annotations

import logging

import redis

from utils.data import keys
from utils.redis_client import is_cluster

log = logging.getLogger(__name__)

LEGACY_MODELS = "ml:models"
LEGACY_PREFIXES = ("ml:model:", "md:ticks:", "md:bars:")
INTERVALS = ("1s", "5s", "1m", "5m", "15m", "1h", "1d")  # bars built from ticks (bar_aggregator.py)


def new_name(old: str) -> str | None:
    """The tagged name of a legacy key, or None when ``old`` is not one."""
    if old == LEGACY_MODELS:
        return keys.MODELS
    if old.startswith("ml:model:"):
        return keys.model(old[len("ml:model:"):])
    if old.startswith("md:ticks:") and not old.startswith("md:ticks:{"):
        return keys.ticks(old[len("md:ticks:"):])
    if old.startswith("md:bars:") and not old.startswith("md:bars:{"):
        symbol, _, interval = old[len("md:bars:"):].rpartition(":")
        if symbol and interval in INTERVALS:  # md:bars:<SYM> (imported bars) keeps its name
            return keys.interval_bars(symbol, interval)
    return None


def migrate_legacy_keys(client: redis.Redis) -> int:
    """Rename every legacy data key to its tagged name; returns how many were renamed."""
    if is_cluster(client):
        return 0
    renamed = 0
    candidates = [LEGACY_MODELS]
    for prefix in LEGACY_PREFIXES:
        candidates += client.scan_iter(match=prefix + "*", count=1000)
    for raw in candidates:
        old = raw.decode() if isinstance(raw, bytes) else raw
        new = new_name(old)
        if new is None or new == old:
            continue
        try:
            renamed += bool(client.renamenx(old, new))
        except redis.ResponseError:  # gone meanwhile (another server renamed it first)
            continue
    if renamed:
        log.info("renamed %d data keys to their Redis Cluster hash-tagged names", renamed)
    return renamed
