"""The worker supervisor restarts dead workers and backs off from a crash loop."""
from __future__ import annotations

import sys
import time

from tests.conftest import wait_until
from utils.supervisor import WorkerSupervisor


def die_at_once(settings, index):
    sys.exit(3)


def test_a_worker_that_keeps_dying_at_start_is_restarted_with_backoff():
    restarts = []
    supervisor = WorkerSupervisor(die_at_once, None, 1, on_restart=lambda: restarts.append(time.monotonic()),
                                  check_seconds=0.05).start()
    try:
        wait_until(lambda: len(restarts) >= 2, timeout=120, interval=0.1)
    finally:
        supervisor.stop(timeout=5)
    # Without backoff a dying worker is restarted at the next check (0.05 s). With it, a restart
    # waits >= 1 s after a death within CRASH_LOOP_SECONDS of the start, and a later death means
    # the worker lived >= CRASH_LOOP_SECONDS: either way >= 1 s, however slow the machine.
    assert restarts[1] - restarts[0] >= 1.0


def refuse_to_start(settings, index):
    sys.exit(2)  # what a worker does on a half-declared task type (utils/tasks/runtime.py)


def test_a_worker_that_refuses_to_start_is_not_restarted():
    restarts = []
    supervisor = WorkerSupervisor(refuse_to_start, None, 1, on_restart=lambda: restarts.append(1),
                                  check_seconds=0.05).start()
    try:
        wait_until(lambda: supervisor.pids() == [], timeout=120, interval=0.05)  # given up on, not respawned
    finally:
        supervisor.stop(timeout=5)
    assert restarts == []
