"""The registry of indicator kinds: every kind declared once, in its family's module.

``KINDS`` feeds batch features, streaming state, ListFeatures and the rule language; adding a
kind is one entry in its family's list, nothing else.
"""
from utils.engine.indicators.kinds.momentum import MOMENTUM_KINDS
from utils.engine.indicators.kinds.moving_averages import MOVING_AVERAGE_KINDS
from utils.engine.indicators.kinds.range_oscillators import RANGE_OSCILLATOR_KINDS
from utils.engine.indicators.kinds.trend import TREND_KINDS
from utils.engine.indicators.kinds.volatility import VOLATILITY_KINDS
from utils.engine.indicators.kinds.volume import VOLUME_KINDS
from utils.engine.indicators.step_core import IndicatorKind

KINDS: dict[str, IndicatorKind] = {kind.name: kind for kind in [
    *MOVING_AVERAGE_KINDS, *MOMENTUM_KINDS, *VOLATILITY_KINDS, *RANGE_OSCILLATOR_KINDS, *TREND_KINDS,
    *VOLUME_KINDS]}

__all__ = ["KINDS"]
