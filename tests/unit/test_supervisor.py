"""The worker supervisor restarts dead workers and backs off from a crash loop."""
from __future__ import annotations

import sys
import time

from utils.supervisor import WorkerSupervisor


def die_at_once(settings, index):
    sys.exit(3)


def test_a_worker_that_keeps_dying_at_start_is_restarted_with_backoff():
    restarts = []
    supervisor = WorkerSupervisor(die_at_once, None, 1, on_restart=lambda: restarts.append(time.monotonic()),
                                  check_seconds=0.05).start()
    try:
        time.sleep(4.0)
    finally:
        supervisor.stop(timeout=5)
    # Without backoff this would restart every ~0.1 s; with it the gaps grow 1 s, 2 s, ...
    assert 1 <= len(restarts) <= 3
    gaps = [later - earlier for earlier, later in zip(restarts, restarts[1:])]
    assert all(gap >= 1.5 for gap in gaps)
