"""One pub/sub connection per process for every follower of live ticks.

Why: a connection and a polling thread per follower meant, with 100 subscribers, 100 sockets
polled in turn and each published message decoded once per follower while they all fought for
the GIL; the fan-out fell seconds behind at 10k ticks/s. Here one thread reads the channels,
decodes each message once and hands the (read-only) update to the queues of the followers of
its symbol; a follower's thread sleeps on its queue until something arrives.

Channel subscriptions are reference counted and applied by the hub's own thread (a PubSub
connection is not thread-safe); ``Follower.ready`` is set once Redis confirmed every channel,
so a follower announces itself only after it can receive. A follower that lets more than
``max_queued`` messages pile up is cut off (``Follower.overflowed``) rather than holding memory
without bound.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any

import redis

from utils.data import keys

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how soon a new subscription is applied while no message arrives


class Follower:
    def __init__(self, symbols: list[str], max_queued: int) -> None:
        self.symbols = symbols
        self.updates: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self.max_queued = max_queued
        self.ready = threading.Event()
        self.overflowed = False
        self.failure: Exception | None = None  # the hub lost Redis: the follower's stream ends with it
        self._waiting = set(symbols)  # channels not yet confirmed by Redis


class LiveHub:
    def __init__(self, client: redis.Redis, max_queued: int = 100_000) -> None:
        self.redis = client
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._followers: dict[str, set[Follower]] = {}  # symbol -> its followers
        self._changes: list[tuple[str, Follower]] = []  # ("add" | "remove", follower), applied by the hub
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the hub's thread is up (it ends once nobody follows)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def add(self, symbols: list[str]) -> Follower:
        follower = Follower(list(dict.fromkeys(symbols)), self.max_queued)
        with self._lock:
            self._changes.append(("add", follower))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="live-hub", daemon=True)
                self._thread.start()
        return follower

    def remove(self, follower: Follower) -> None:
        with self._lock:
            self._changes.append(("remove", follower))

    # ------------------------------------------------------------ hub thread
    def _run(self) -> None:
        # redis-py's default push handler formats every message for a debug log line: ~10 µs each
        pubsub = self.redis.pubsub(push_handler_func=_as_is)
        try:
            while True:
                if self._changes or not self._followers:  # read without the lock; decided under it
                    with self._lock:
                        changes, self._changes = self._changes, []
                        if not changes and not self._followers:
                            self._thread = None  # nobody follows: end; the next add starts a new hub
                            return
                    self._apply(pubsub, changes)
                if not pubsub.subscribed:
                    threading.Event().wait(POLL_SECONDS)
                    continue
                try:
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                except Exception as exc:  # noqa: BLE001 - whatever broke the connection, no follower may hang
                    log.warning("live feed connection failed (%s); followers are cut off", exc)
                    self._cut_off_all(exc)
                    return
                if message is not None:
                    self._deliver(message)
        finally:
            pubsub.close()

    def _apply(self, pubsub: Any, changes: list[tuple[str, Follower]]) -> None:
        subscribe, unsubscribe = [], []
        for kind, follower in changes:
            for symbol in follower.symbols:
                followers = self._followers.setdefault(symbol, set())
                if kind == "add":
                    if not followers:
                        subscribe.append(symbol)
                    else:
                        follower._waiting.discard(symbol)  # the channel is already live
                    followers.add(follower)
                else:
                    followers.discard(follower)
                    if not followers:
                        del self._followers[symbol]
                        unsubscribe.append(symbol)
            if kind == "add" and not follower._waiting:
                follower.ready.set()
        # a symbol dropped and followed again in one round stays subscribed
        subscribe = [symbol for symbol in subscribe if symbol in self._followers]
        unsubscribe = [symbol for symbol in unsubscribe if symbol not in self._followers]
        if subscribe:
            pubsub.subscribe(*(keys.live_channel(symbol) for symbol in subscribe))
        if unsubscribe:
            pubsub.unsubscribe(*(keys.live_channel(symbol) for symbol in unsubscribe))

    def _deliver(self, message: dict[str, Any]) -> None:
        symbol = _symbol(message["channel"])
        followers = self._followers.get(symbol, ())
        if message["type"] == "subscribe":
            for follower in followers:
                follower._waiting.discard(symbol)
                if not follower._waiting:
                    follower.ready.set()
            return
        if message["type"] != "message" or not followers:
            return
        update = json.loads(message["data"])  # once, shared read-only by every follower
        for follower in followers:
            if follower.updates.qsize() >= follower.max_queued:
                follower.overflowed = True
                continue
            follower.updates.put((symbol, update))

    def _cut_off_all(self, exc: Exception) -> None:
        with self._lock:
            followers = {f for group in self._followers.values() for f in group}
            followers.update(follower for kind, follower in self._changes if kind == "add")
            self._followers.clear()
            self._changes.clear()
            self._thread = None
        for follower in followers:
            follower.failure = exc
            follower.ready.set()


def _symbol(channel: bytes | str) -> str:
    text = channel.decode() if isinstance(channel, bytes) else channel
    return text.split(":", 2)[2]


def _as_is(response: Any) -> Any:
    return response
