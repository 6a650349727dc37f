"""Publish an operator alert (a risk-limit breach...) on the Redis alerts channel, which every
WebSocket gateway forwards to its ``alert`` subscribers. Best effort: an alert never fails the
caller's request."""
from __future__ import annotations

import json
import logging
import math
from typing import Any

import redis

from utils.queue import keys

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def publish_alert(client: redis.Redis, kind: str, **fields: Any) -> None:
    try:
        client.publish(keys.ALERTS, json.dumps({"kind": kind, **{k: _plain(v) for k, v in fields.items()}}))
    except redis.RedisError as exc:
        log.warning("could not publish a %s alert: %s", kind, exc)
