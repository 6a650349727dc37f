"""The worker's warm-up runs every task type's own code on tiny inputs, stops at its budget, and
reports a failing type instead of raising (its first job then compiles for itself)."""
from __future__ import annotations

import pytest

from config.settings import load_settings
from utils.engine.backend import cpu_backend
from utils.task_types import TASK_TYPES, names
from utils.tasks.warmup import WARM_UPS, SyntheticBars, WarmUpInputs, warm_up


def all_cpu() -> dict:
    return {task_type.name: cpu_backend() for task_type in TASK_TYPES}


@pytest.fixture
def settings(tmp_path):
    return load_settings(data_dir=tmp_path / "data", redis_embedded="never")


def test_every_task_type_has_a_warm_up_and_each_runs(settings):
    assert set(WARM_UPS) == set(names())
    inputs = WarmUpInputs(settings, all_cpu())
    for name, step in WARM_UPS.items():
        step(inputs)  # raises if the handler code it drives rejects its inputs


def test_the_warm_up_stops_at_its_budget(settings):
    report = warm_up(settings, all_cpu(), budget_seconds=0)
    assert not report.complete and report.seconds == {}


def test_a_failing_warm_up_is_reported_and_the_rest_still_run(settings):
    ran = []

    def broken(inputs):
        raise RuntimeError("boom")

    report = warm_up(settings, all_cpu(), 60, warm_ups={"backtest": broken, "report": lambda inputs: ran.append("report")})
    assert report.complete and report.failed == ["backtest"] and ran == ["report"]
    assert list(report.seconds) == ["backtest", "report"]


def test_synthetic_bars_answer_like_the_store():
    bars = SyntheticBars(("A", "B"), rows=50)
    window = bars.read("A", int(bars.times[10]), int(bars.times[19]))
    assert len(window) == 10 and window.time[0] == bars.times[10]
    columns = bars.read_columns_many(["A", "B"], ("close",), int(bars.times[40]))
    assert columns["B"].values["close"].shape == (10,) and bars.versions(["A", "C"]) == [1, None]


def test_the_cache_counts_as_warm_only_after_a_complete_warm_up_marked_it(tmp_path):
    from utils.compile_cache import WARM_MARKER, is_warm, mark_warm
    cache = tmp_path / "numba-cache"
    assert not is_warm(cache)
    mark_warm(cache)  # creates the directory if need be
    assert is_warm(cache)
    (cache / WARM_MARKER).write_text("numba 0.1, python 2.7\n")  # another numba or Python: not warm
    assert not is_warm(cache)
