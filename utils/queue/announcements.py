"""One pub/sub listener per process that wakes whoever waits on a job's announcements.

The queue's scripts PUBLISH on a job's key name when its progress or status changes (see
``scripts.py``). Rather than one subscription (and connection) per waiting RPC, a process keeps one
PSUBSCRIBE on every job channel in a daemon thread and sets the events of the waiters of that job.
Waiters always wait with a timeout and re-read the job, so an announcement lost across a Redis
reconnect only delays them to their next poll.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import redis

from utils.queue import keys

log = logging.getLogger(__name__)
IDLE_EXIT_SECONDS = 30.0


class JobAnnouncements:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._waiters: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def listening(self, job_id: str) -> Iterator[threading.Event]:
        """An event set at each announcement of the job while the block runs. Register first,
        then read the job's state, then wait (clearing the event before each read): a change
        announced between the read and the wait is not missed."""
        self._ensure_listening()
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                waiters = self._waiters.get(job_id)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[job_id]

    def _ensure_listening(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, name="job-announcements", daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        """Dispatch announcements until nobody has waited for ``IDLE_EXIT_SECONDS`` (the next
        ``wait`` starts a new listener), so an unused client does not keep a thread and a
        connection forever."""
        prefix = keys.job("")
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < IDLE_EXIT_SECONDS:
            subscription = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                subscription.psubscribe(keys.job("*"))
                while time.monotonic() - idle_since < IDLE_EXIT_SECONDS:
                    message = subscription.get_message(timeout=1.0)
                    with self._lock:
                        if self._waiters:
                            idle_since = time.monotonic()
                    if message is None:
                        continue
                    channel = message.get("channel")
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    if not isinstance(channel, str) or not channel.startswith(prefix):
                        continue
                    with self._lock:
                        waiters = list(self._waiters.get(channel[len(prefix):], ()))
                    for event in waiters:
                        event.set()
            except redis.RedisError as exc:
                log.debug("job announcements: %s; resubscribing", exc)
                time.sleep(1.0)
            finally:
                try:
                    subscription.close()
                except redis.RedisError:
                    pass
