"""Warm-up compiles the requested kinds in every driver form without touching anything else."""
from __future__ import annotations

from services.realtime_service import DEFAULT_FEATURES, DEFAULT_STREAM_FEATURES, warm_up_names
from utils.engine.indicators import step_core
from utils.engine.indicators.features import KINDS
from utils.engine.indicators.warmup import warm_up_indicators


def compiled_forms() -> set[tuple[object, str]]:
    """(step function, driver role) of every driver numba has compiled at least once."""
    forms = set()
    for (step, _load, _store, _init, role, _outputs), drivers in step_core._DRIVERS.items():
        if all(driver.signatures for driver in (drivers if isinstance(drivers, tuple) else (drivers,))):
            forms.add((step, role))
    return forms


def test_warm_up_compiles_batch_panel_and_stream_forms():
    warm_up_indicators(["sma_5", "atr_14", "macd"])  # what it did is checked, not how long it took
    expected = {(KINDS[kind].step, role) for kind in ("sma", "atr", "macd") for role in ("series", "panel", "tick")}
    assert expected <= compiled_forms()


def test_warm_up_modes():
    assert warm_up_names("none") == []
    assert warm_up_names("all") is None
    assert set(warm_up_names("default")) == {*DEFAULT_STREAM_FEATURES, *DEFAULT_FEATURES}
