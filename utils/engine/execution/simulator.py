"""Replay one parent order through intraday bars with a market-impact model.

Conventions (shared by ``step_fill``, ``simulate_order`` and the batch path):
  * ``side`` is +1 for a buy, -1 for a sell; quantities are positive shares for both sides.
  * ``price`` is the bar's reference price: the market's average price in that bar, taken as the
    typical price (high + low + close) / 3 (``typical_prices``). ``sigma`` is the per-bar return
    volatility estimate, ``volume`` the bar's traded volume.
  * At most ``participation_cap x volume`` fills in a bar; a bar with no volume fills nothing.
  * Impact is always against the trader: a buy fills above the reference, a sell below.
      - ``sqrt`` (square-root law): the fill is at
        ``(price + permanent_shift) * (1 + side * coefficient * sigma * sqrt(filled / volume))``.
      - ``linear`` (Almgren-Chriss with time measured in bars, so tau = 1 bar): the fill is at
        ``price + permanent_shift + side * (epsilon + eta * filled)``, and the fill then moves the
        price for every later bar by ``side * gamma * filled`` (the permanent impact of a trade
        does not touch its own fill, as in the paper's S~_k = S_{k-1} - h(n_k / tau)).
  * ``permanent_shift`` is the accumulated permanent displacement of the price, in price units
    and signed (positive after buys); only the linear model moves it.
  * A bar where nothing fills reports the undisturbed price ``price + permanent_shift`` (never
    NaN), so ``filled * fill_price`` is always a valid cash amount.
  * Child quantities that do not fill roll into the next bar; what is left after the last bar
    stays unfilled (fill rate < 1). The cumulative fill never exceeds the parent quantity.

``fill_bar`` and ``simulate_window`` are the compiled kernels; the batch path
(``simulator_batch.simulate_orders``) runs the very same ``simulate_window`` per order, so its
results are bitwise identical to ``simulate_order``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

IMPACT_KINDS = ("sqrt", "linear")
KIND_SQRT, KIND_LINEAR = range(2)

# impact parameter vector layout (one float64 array handed to the kernels)
(P_KIND, P_COEFFICIENT, P_ETA, P_GAMMA, P_EPSILON, P_CAP) = range(6)
IMPACT_FIELDS = 6


@dataclass(frozen=True)
class ImpactModel:
    kind: str = "sqrt"              # "sqrt" (square-root law) or "linear" (Almgren-Chriss)
    coefficient: float = 0.1         # sqrt: temporary impact (fraction of price) = coefficient * bar_sigma * sqrt(fill / bar_volume)
    eta: float = 0.0                 # linear: temporary impact per share = epsilon + eta * fill / bar_duration (price units)
    gamma: float = 0.0               # linear: permanent impact per share traded (price units), accumulates
    epsilon: float = 0.0
    participation_cap: float = 1.0   # at most this fraction of a bar's volume fills in that bar

    def __post_init__(self) -> None:
        if self.kind not in IMPACT_KINDS:
            raise ValueError(f"kind must be one of {IMPACT_KINDS}, got {self.kind!r}")
        for name in ("coefficient", "eta", "gamma", "epsilon"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        cap = self.participation_cap
        if not (math.isfinite(cap) and 0.0 < cap <= 1.0):
            raise ValueError(f"participation_cap must be in (0, 1], got {cap!r}")

    def parameters(self) -> np.ndarray:
        """The model as the float64 vector the kernels read (layout ``P_*``)."""
        parameters = np.empty(IMPACT_FIELDS)
        parameters[P_KIND] = IMPACT_KINDS.index(self.kind)
        parameters[P_COEFFICIENT] = self.coefficient
        parameters[P_ETA] = self.eta
        parameters[P_GAMMA] = self.gamma
        parameters[P_EPSILON] = self.epsilon
        parameters[P_CAP] = self.participation_cap
        return parameters


@dataclass(frozen=True)
class OrderResult:
    filled: np.ndarray          # (B,) shares filled in each bar
    fill_prices: np.ndarray     # (B,) average fill price in each bar, impact included
    unfilled: float             # shares left after the last bar (0 when the order completed)
    permanent_shift: float      # permanent price displacement after the last bar (price units)


@njit(cache=True)
def fill_bar(side, wanted, price, volume, sigma, kind, coefficient, eta, gamma, epsilon, cap,
             permanent_shift):
    """One bar on plain numbers: (filled, average fill price, new permanent shift)."""
    capacity = cap * volume
    filled = wanted if wanted < capacity else capacity
    if filled <= 0.0:
        return 0.0, price + permanent_shift, permanent_shift
    base = price + permanent_shift
    if kind == KIND_SQRT:
        fill_price = base * (1.0 + side * coefficient * sigma * math.sqrt(filled / volume))
        return filled, fill_price, permanent_shift
    fill_price = base + side * (epsilon + eta * filled)
    return filled, fill_price, permanent_shift + side * gamma * filled


@njit(cache=True)
def simulate_window(side, quantity, schedule, prices, volumes, sigmas, parameters, filled,
                    fill_prices):
    """Fill one parent order bar by bar into ``filled``/``fill_prices``; (unfilled, shift)."""
    kind = int(parameters[P_KIND])
    coefficient = parameters[P_COEFFICIENT]
    eta = parameters[P_ETA]
    gamma = parameters[P_GAMMA]
    epsilon = parameters[P_EPSILON]
    cap = parameters[P_CAP]
    remaining = quantity
    carry = 0.0
    shift = 0.0
    for bar in range(schedule.shape[0]):
        wanted = schedule[bar] + carry
        if wanted > remaining:
            wanted = remaining
        done, fill_price, shift = fill_bar(side, wanted, prices[bar], volumes[bar], sigmas[bar],
                                           kind, coefficient, eta, gamma, epsilon, cap, shift)
        filled[bar] = done
        fill_prices[bar] = fill_price
        carry = wanted - done
        remaining -= done
    return remaining, shift


def _check_side(side: int) -> int:
    if side not in (1, -1):
        raise ValueError(f"side must be +1 (buy) or -1 (sell), got {side!r}")
    return int(side)


def step_fill(side: int, wanted: float, price: float, volume: float, sigma: float, model: ImpactModel,
              permanent_shift: float) -> tuple[float, float, float]:
    """One bar: (filled quantity <= min(wanted, participation_cap*volume), average fill price
    incl. impact - worse for the trader: higher for a buy (side +1), lower for a sell (side -1) -
    new permanent_shift)."""
    side = _check_side(side)
    if not wanted >= 0.0:
        raise ValueError(f"wanted must be >= 0, got {wanted!r}")
    if not volume >= 0.0:
        raise ValueError(f"volume must be >= 0, got {volume!r}")
    filled, fill_price, shift = fill_bar(
        float(side), float(wanted), float(price), float(volume), float(sigma),
        IMPACT_KINDS.index(model.kind), model.coefficient, model.eta, model.gamma, model.epsilon,
        model.participation_cap, float(permanent_shift))
    return float(filled), float(fill_price), float(shift)


def check_bars(prices: np.ndarray, volumes: np.ndarray, sigmas: np.ndarray) -> None:
    """Raise ValueError unless the bar arrays are 1-D, equally long and finite with prices > 0,
    volumes >= 0 and sigmas >= 0."""
    for name, values in (("prices", prices), ("volumes", volumes), ("sigmas", sigmas)):
        if values.ndim != 1 or values.shape != prices.shape:
            raise ValueError(f"{name} must be 1-D with the length of prices {prices.shape}, "
                             f"got shape {values.shape}")
        if not np.isfinite(values).all():
            raise ValueError(f"{name} must be finite")
    if prices.size and prices.min() <= 0.0:
        raise ValueError("prices must be > 0")
    if volumes.size and volumes.min() < 0.0:
        raise ValueError("volumes must be >= 0")
    if sigmas.size and sigmas.min() < 0.0:
        raise ValueError("sigmas must be >= 0")


def simulate_order(side: int, quantity: float, schedule: np.ndarray, prices: np.ndarray,
                   volumes: np.ndarray, sigmas: np.ndarray, model: ImpactModel) -> OrderResult:
    """Replay a parent order of ``quantity`` shares following ``schedule`` (child shares per bar)
    through B bars; see the module docstring for the conventions."""
    side = _check_side(side)
    if not (math.isfinite(quantity) and quantity > 0.0):
        raise ValueError(f"quantity must be a finite number > 0, got {quantity!r}")
    schedule, prices, volumes, sigmas = (np.ascontiguousarray(values, dtype=np.float64)
                                         for values in (schedule, prices, volumes, sigmas))
    check_bars(prices, volumes, sigmas)
    if schedule.shape != prices.shape:
        raise ValueError(f"schedule must have one entry per bar {prices.shape}, got {schedule.shape}")
    if not (np.isfinite(schedule).all() and (schedule >= 0.0).all()):
        raise ValueError("schedule must be finite and >= 0")
    filled = np.empty_like(prices)
    fill_prices = np.empty_like(prices)
    unfilled, shift = simulate_window(float(side), float(quantity), schedule, prices, volumes,
                                      sigmas, model.parameters(), filled, fill_prices)
    return OrderResult(filled, fill_prices, float(unfilled), float(shift))


def typical_prices(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """The bar's reference price: (high + low + close) / 3."""
    return (np.asarray(high, dtype=np.float64) + low + close) / 3.0
