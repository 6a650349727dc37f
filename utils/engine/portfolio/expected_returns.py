"""Annualised expected returns per asset, as ``pypfopt.expected_returns`` (1.6.0).

NaN returns are skipped as pandas does: ``prod`` and ``mean`` ignore them, ``count`` counts the
valid ones, ``ewm`` lets a NaN date decay the older weights.
"""
from __future__ import annotations

import numpy as np

from .pairwise import ewm_last_mean, pairwise_cov
from .returns import as_price_panel, dates_with_a_return, price_changes


def _annualised(returns: np.ndarray, compounding: bool, frequency: int) -> np.ndarray:
    """CAGR ``prod(1 + r) ** (frequency / count) - 1`` or the arithmetic ``mean * frequency``."""
    valid = ~np.isnan(returns)
    counts = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if compounding:
            growth = np.prod(np.where(valid, 1.0 + returns, 1.0), axis=0)
            return growth ** (frequency / counts) - 1.0
        return np.nansum(returns, axis=0) / counts * frequency


def _returns(prices, log_returns: bool) -> np.ndarray:
    changes = price_changes(as_price_panel(prices), log_returns)
    return changes[dates_with_a_return(changes)]


def mean_historical(prices, compounding: bool = True, frequency: int = 252,
                    log_returns: bool = False) -> np.ndarray:
    """(N,) ``mean_historical_return``: geometric (default) or arithmetic mean, annualised."""
    return _annualised(_returns(prices, log_returns), compounding, frequency)


def ema_historical(prices, span: int = 500, compounding: bool = True, frequency: int = 252,
                   log_returns: bool = False) -> np.ndarray:
    """(N,) ``ema_historical_return``: the last exponentially weighted mean daily return."""
    daily = ewm_last_mean(_returns(prices, log_returns), span)
    if compounding:
        return (1.0 + daily) ** frequency - 1.0
    return daily * frequency


def capm(prices, market_prices=None, risk_free_rate: float = 0.0, compounding: bool = True,
         frequency: int = 252, log_returns: bool = False) -> np.ndarray:
    """(N,) ``capm_return``: rf + beta · (market return − rf).

    Without ``market_prices`` the market is the equal-weighted mean of the available returns per
    date; with them, the market's returns are aligned on the assets' dates (a left join)."""
    panel = as_price_panel(prices)
    changes = price_changes(panel, log_returns)
    kept = dates_with_a_return(changes)
    returns = changes[kept]
    if market_prices is None:
        with np.errstate(invalid="ignore"):
            valid = ~np.isnan(returns)
            market = np.nansum(returns, axis=1) / valid.sum(axis=1)
    else:
        market_panel = as_price_panel(market_prices, "market_prices")
        if market_panel.shape != (panel.shape[0], 1):
            raise ValueError(f"market_prices must be one series of {panel.shape[0]} dates, "
                             f"got shape {market_panel.shape}")
        market = price_changes(market_panel, log_returns)[kept, 0]
    with_market = np.column_stack([returns, market])
    covariance = pairwise_cov(with_market)
    betas = covariance[:-1, -1] / covariance[-1, -1]
    market_return = _annualised(market[:, None], compounding, frequency)[0]
    return risk_free_rate + betas * (market_return - risk_free_rate)
