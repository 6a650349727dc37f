"""Keeps N worker processes alive: spawn, restart the ones that die, stop them gracefully."""
from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

CRASH_LOOP_SECONDS = 5.0  # a worker dying sooner than this after its start backs off
EXIT_CONFIGURATION = 2  # a worker that exits with this refused to start (bad config): not restarted


class WorkerSupervisor:
    def __init__(self, target: Callable[..., None], settings: Any, count: int,
                 on_restart: Callable[[], None] | None = None, check_seconds: float = 0.5) -> None:
        self.target = target
        self.settings = settings
        self.count = count
        self.on_restart = on_restart
        self.check_seconds = check_seconds
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[multiprocessing.Process | None] = [None] * count
        self._started_at = [0.0] * count
        self._quick_deaths = [0] * count  # consecutive deaths soon after start (crash loop)
        self._next_start = [0.0] * count
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    def _spawn(self, index: int) -> None:
        process = self._context.Process(target=self.target, args=(self.settings, index),
                                        name=f"worker-{index}", daemon=False)
        process.start()
        self._processes[index] = process
        self._started_at[index] = time.monotonic()
        log.info("started worker %d (pid %d)", index, process.pid)

    def start(self) -> "WorkerSupervisor":
        for index in range(self.count):
            self._spawn(index)
        self._monitor = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._monitor.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(self.check_seconds):
            now = time.monotonic()
            for index, process in enumerate(self._processes):
                if process is None or process.is_alive() or self._stopping.is_set() or now < self._next_start[index]:
                    continue
                if process.exitcode == EXIT_CONFIGURATION:
                    log.error("worker %d (pid %d) refused to start (exit code %d, see its log); not restarting "
                              "it until the configuration is fixed", index, process.pid, EXIT_CONFIGURATION)
                    self._processes[index] = None
                    continue
                if self._next_start[index] == 0.0:  # first sight of this death: decide when to restart
                    quick = now - self._started_at[index] < CRASH_LOOP_SECONDS
                    self._quick_deaths[index] = self._quick_deaths[index] + 1 if quick else 0
                    delay = min(2.0 ** (self._quick_deaths[index] - 1), 30.0) if quick else 0.0
                    log.warning("worker %d (pid %d) exited with %s; restarting%s", index, process.pid,
                                process.exitcode, f" in {delay:.0f}s (it keeps dying at start)" if delay else "")
                    self._next_start[index] = now + delay
                    if delay:
                        continue
                self._next_start[index] = 0.0
                self._spawn(index)
                if self.on_restart:
                    self.on_restart()

    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p is not None and p.pid is not None]

    def stop(self, timeout: float) -> None:
        """SIGTERM every worker (they drain), wait up to ``timeout``, then kill stragglers."""
        self._stopping.set()
        for process in self._processes:
            if process is not None and process.is_alive():
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self._processes:
            if process is not None:
                process.join(max(deadline - time.monotonic(), 0.1))
                if process.is_alive():
                    log.warning("worker pid %d did not stop in time; killing it", process.pid)
                    process.kill()
                    process.join(5)
