"""Warm-up compiles the requested kinds in every driver form without touching anything else."""
from __future__ import annotations

from services.realtime_service import DEFAULT_FEATURES, DEFAULT_STREAM_FEATURES, warm_up_names
from utils.engine.indicators.warmup import warm_up_indicators


def test_warm_up_runs_batch_panel_and_stream_forms():
    assert warm_up_indicators(["sma_5", "atr_14", "macd"]) >= 0


def test_warm_up_modes():
    assert warm_up_names("none") == []
    assert warm_up_names("all") is None
    assert set(warm_up_names("default")) == {*DEFAULT_STREAM_FEATURES, *DEFAULT_FEATURES}
