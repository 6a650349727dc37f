"""Factory-built kernels (the indicator drivers, closures over their kind's step) are cached on
disk under a key that is the same in every process, so a new process loads instead of compiling."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT
from utils.engine.indicators import step_core
from utils.engine.indicators.features import KINDS
from utils.engine.kernel_cache import ClosureCache, fingerprint

# Runs in a fresh interpreter: compile (or load) sma's drivers, report numba's cache counters.
PROBE = """
import json
from utils.engine.indicators import step_core
from utils.engine.indicators.features import KINDS
from utils.engine.indicators.warmup import warm_up_indicators
warm_up_indicators(["sma_5"])
counts = {"hits": 0, "misses": 0}
for key, drivers in step_core._DRIVERS.items():
    if key[0] is KINDS["sma"].step:
        for driver in drivers if isinstance(drivers, tuple) else (drivers,):
            counts["hits"] += sum(driver.stats.cache_hits.values())
            counts["misses"] += sum(driver.stats.cache_misses.values())
print(json.dumps(counts))
"""


def run_probe(cache_dir) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_new_process_loads_the_drivers_from_the_disk_cache(tmp_path):
    first = run_probe(tmp_path)
    assert first["misses"] > 0 and first["hits"] == 0  # compiled, and written:
    assert list(tmp_path.rglob("*step_core*.nbi")) and list(tmp_path.rglob("*.nbc"))
    second = run_probe(tmp_path)
    assert second["hits"] > 0 and second["misses"] == 0  # (a driver that panel calls comes inside panel's code)


def test_drivers_use_the_stable_key_cache():
    series = step_core.series_driver(KINDS["sma"], 1)
    columns, panel = step_core.panel_drivers(KINDS["sma"], 1)  # the parallel one too
    for driver in (series, step_core.tick_driver(KINDS["sma"]), columns, panel):
        assert isinstance(driver._cache, ClosureCache)


def test_the_key_follows_the_code_and_values_the_closure_holds():
    sma, ema = KINDS["sma"], KINDS["ema"]
    rebuilt = step_core._make_series_driver((sma.step, sma.load, sma.store), len(sma.params), 1)
    assert fingerprint(rebuilt.py_func) == fingerprint(step_core.series_driver(sma, 1).py_func)
    assert fingerprint(step_core.series_driver(ema, 1).py_func) != fingerprint(step_core.series_driver(sma, 1).py_func)
    two_outputs = step_core._make_series_driver((sma.step, sma.load, sma.store), len(sma.params), 2)
    assert fingerprint(two_outputs.py_func) != fingerprint(rebuilt.py_func)


def test_a_closure_over_a_value_without_a_fingerprint_stays_uncached():
    import numpy as np
    from numba import njit

    from utils.engine.kernel_cache import cache_on_disk

    def make(weights):
        @njit
        def weighted(x):
            return (x * weights).sum()
        return cache_on_disk(weighted)

    kernel = make(np.ones(3))
    assert not isinstance(kernel._cache, ClosureCache) and kernel(np.arange(3.0)) == 3.0
