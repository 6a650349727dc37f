"""TTL cache over Redis (SET with EX) for JSON values, with hit/miss accounting."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import redis

from utils.data import keys


def digest(*parts: Any) -> str:
    """Content address of the parts (JSON-encoded, order-sensitive)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class RedisCache:
    def __init__(self, client: redis.Redis, namespace: str, ttl_seconds: int, stats: Any) -> None:
        self.redis = client
        self.namespace = namespace
        self.ttl = ttl_seconds
        self.stats = stats

    def get(self, key_digest: str) -> Any | None:
        raw = self.redis.get(keys.cache(self.namespace, key_digest))
        self.stats.record(hit=raw is not None)
        return json.loads(raw) if raw is not None else None

    def set(self, key_digest: str, value: Any) -> None:
        # NaN is valid in our payloads (indicator warm-up); Python's json round-trips it.
        self.redis.set(keys.cache(self.namespace, key_digest), json.dumps(value), ex=self.ttl)
