"""Benchmarks with anchor comparisons; `make bench` (= `python -m bench`) writes docs/benchmarks.md.

Each bench module (``bench/<name>.py``, listed in ``MODULES``) exposes ``run() -> Section``.
``python -m bench`` runs them all; ``python -m bench queue`` runs one and replaces only its
section in docs/benchmarks.md (sections are delimited by ``<!-- bench:<name> -->`` markers).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

# name -> module path; add indicators/backtests/ML modules here as they are written.
MODULES: dict[str, str] = {
    "queue": "bench.job_queue",
    "indicators": "bench.indicators",
    "backtest": "bench.backtest",
    "backtest_e2e": "bench.backtest_e2e",
    "ml": "bench.ml",
    "load": "bench.load",
    "jobs": "bench.jobs",
    "factor": "bench.factor",
    "portfolio": "bench.portfolio",
    "execution": "bench.execution",
    "inference": "bench.inference",
    "coldstart": "bench.coldstart",
    "realtime": "bench.realtime",
    "gateway": "bench.gateway",
    "scale": "bench.scale",
}


@dataclass(frozen=True)
class Section:
    title: str
    markdown: str  # body without the "## title" line


def percentile(samples: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def best_of(repeats: int, action) -> float:
    """The fastest of ``repeats`` timed calls of ``action``, in seconds (the min filters scheduler noise)."""
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - began)
    return best


def latency_summary(samples_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds plus the sample count."""
    return {"n": len(samples_s),
            "p50": percentile(samples_s, 50) * 1e3, "p90": percentile(samples_s, 90) * 1e3,
            "p99": percentile(samples_s, 99) * 1e3, "max": (max(samples_s) * 1e3 if samples_s else math.nan)}
