"""Data keys written before the Redis Cluster hash tags are renamed once at server start."""
from __future__ import annotations

from utils.data import keys
from utils.data.legacy_keys import migrate_legacy_keys


def test_models_ticks_and_tick_bars_get_their_tagged_names_once(redis_client):
    redis_client.hset("ml:model:rf-1", "metadata", "{}")
    redis_client.zadd("ml:models", {"rf-1": 1.0})
    redis_client.xadd("md:ticks:000001.SZ", {"t": "1"})
    redis_client.hset("md:bars:000001.SZ:1m", "0", "x")
    redis_client.hset("md:bars:000001.SZ", "version", "3")  # imported bars: their name is unchanged
    redis_client.hset("ml:model-files:rf-1", ".version", "1")  # model files: unchanged
    redis_client.hset(keys.model("rf-2"), "metadata", "{}")  # already new
    redis_client.hset("ml:model:rf-2", "metadata", "old")  # ... and an old copy: never overwrites

    assert migrate_legacy_keys(redis_client) == 4
    assert redis_client.hget(keys.model("rf-1"), "metadata") == "{}"
    assert redis_client.zrange(keys.MODELS, 0, -1) == ["rf-1"]
    assert redis_client.xlen(keys.ticks("000001.SZ")) == 1
    assert redis_client.hget(keys.interval_bars("000001.SZ", "1m"), "0") == "x"
    assert redis_client.hget(keys.model("rf-2"), "metadata") == "{}"
    assert not redis_client.exists("ml:model:rf-1", "ml:models", "md:ticks:000001.SZ", "md:bars:000001.SZ:1m")
    assert redis_client.exists("md:bars:000001.SZ", "ml:model-files:rf-1", "ml:model:rf-2") == 3
    assert migrate_legacy_keys(redis_client) == 0  # idempotent
