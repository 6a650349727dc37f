"""Parent orders to train and evaluate an execution policy on: one window of bars each.

A window carries ``lookback`` bars BEFORE the order (what the policy may look at when it places
its first child) followed by the ``n_bars`` bars the order executes in. Everything that sizes or
normalises the order (its quantity, the reference volume, the volatility) is measured on bars
that precede the bar it is used in, so nothing looks ahead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..simulator import check_bars, typical_prices

SIDES = {"buy": (1,), "sell": (-1,), "both": (1, -1)}


@dataclass(frozen=True)
class OrderWindow:
    side: int                # +1 buy, -1 sell
    quantity: float          # parent order, shares (> 0)
    prices: np.ndarray       # (lookback + n_bars,) each bar's typical price (h + l + c) / 3
    volumes: np.ndarray      # (lookback + n_bars,) traded volume per bar
    sigmas: np.ndarray       # (lookback + n_bars,) per-bar return volatility known before the bar
    lookback: int            # bars before the order starts

    def __post_init__(self) -> None:
        for name in ("prices", "volumes", "sigmas"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        check_bars(self.prices, self.volumes, self.sigmas)
        if self.side not in (1, -1):
            raise ValueError(f"side must be +1 (buy) or -1 (sell), got {self.side!r}")
        if not (np.isfinite(self.quantity) and self.quantity > 0):
            raise ValueError(f"quantity must be a finite number > 0, got {self.quantity!r}")
        if not 1 <= self.lookback < self.prices.shape[0]:
            raise ValueError(f"lookback must leave at least one order bar, got {self.lookback} of "
                             f"{self.prices.shape[0]} bars")

    @property
    def n_bars(self) -> int:
        return self.prices.shape[0] - self.lookback

    @property
    def order_prices(self) -> np.ndarray:
        return self.prices[self.lookback:]

    @property
    def order_volumes(self) -> np.ndarray:
        return self.volumes[self.lookback:]

    @property
    def order_sigmas(self) -> np.ndarray:
        return self.sigmas[self.lookback:]

    @property
    def twap_price(self) -> float:
        """The benchmark of price advantage: the mean of the order bars' typical prices."""
        return float(self.order_prices.mean())

    @property
    def reference_volume(self) -> float:
        """Mean volume of the bars before the order (volume ratios are taken against it)."""
        return max(float(self.volumes[:self.lookback].mean()), 1e-12)


def trailing_sigmas(prices: np.ndarray, bars: int) -> np.ndarray:
    """Per-bar volatility known before each bar: the standard deviation of the ``bars`` log
    returns that end at the previous bar (NaN until there are that many)."""
    log_returns = np.diff(np.log(prices))
    sigmas = np.full(prices.shape, np.nan)
    if log_returns.shape[0] >= bars:
        windows = np.lib.stride_tricks.sliding_window_view(log_returns, bars)
        sigmas[bars + 1:] = windows.std(axis=1, ddof=1)[:prices.shape[0] - bars - 1]
    return sigmas


def order_windows_from_bars(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, *,
                            window_bars: int, lookback: int = 20, side: str = "both",
                            participation: float = 0.1, sigma_bars: int = 20) -> list[OrderWindow]:
    """Consecutive, non-overlapping orders over one symbol's bars, in time order.

    Each order executes over ``window_bars`` bars and asks for ``participation`` x (mean volume of
    its ``lookback`` preceding bars) x ``window_bars`` shares; ``side`` "buy", "sell" or "both"
    (each window then gives a buy and a sell order, so one policy learns both).
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    if window_bars < 2 or lookback < 1 or sigma_bars < 2 or not 0 < participation <= 1:
        raise ValueError("need window_bars >= 2, lookback >= 1, sigma_bars >= 2 and participation in (0, 1]")
    prices = typical_prices(high, low, close)
    volumes = np.asarray(volume, dtype=np.float64)
    sigmas = trailing_sigmas(prices, sigma_bars)
    windows = []
    first = lookback + sigma_bars + 1  # every bar of a window, the lookback too, needs a sigma
    for start in range(first, prices.shape[0] - window_bars + 1, window_bars):
        span = slice(start - lookback, start + window_bars)
        bar_prices, bar_volumes, bar_sigmas = prices[span], volumes[span], sigmas[span]
        reference = bar_volumes[:lookback].mean()
        usable = (np.isfinite(bar_prices).all() and (bar_prices > 0).all() and np.isfinite(bar_volumes).all()
                  and (bar_volumes >= 0).all() and np.isfinite(bar_sigmas).all() and reference > 0)
        if not usable:
            continue
        quantity = participation * reference * window_bars
        windows.extend(OrderWindow(order_side, quantity, bar_prices, bar_volumes, bar_sigmas, lookback)
                       for order_side in SIDES[side])
    return windows


def split_held_out(windows: list[OrderWindow], held_out_fraction: float) -> tuple[list[OrderWindow],
                                                                                   list[OrderWindow]]:
    """(training, held-out): the held-out orders are the LAST ``held_out_fraction`` (time order),
    so the policy is scored on orders later than any it trained on."""
    held_out = int(round(len(windows) * held_out_fraction))
    if held_out < 1 or held_out >= len(windows):
        raise ValueError(f"{len(windows)} orders cannot be split {1 - held_out_fraction:.0%} / "
                         f"{held_out_fraction:.0%}; use more bars or shorter windows")
    return windows[:-held_out], windows[-held_out:]
