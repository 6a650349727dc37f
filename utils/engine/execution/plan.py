"""``plan_execution``: one parent order -> an ExecutionPlan, for every declared algorithm.

Conventions:
  * ``side`` is "buy" or "sell"; ``quantity`` and every slice are positive shares for both sides.
    Costs are those of the liquidation in the paper; for a buy they hold by symmetry (holdings are
    the shares still to buy, E is the expected premium over the arrival value).
  * ``horizon`` T and ``slices`` N give tau = T / N and times t_j = j * tau (N + 1 values).
  * ``expected_cost`` E and ``cost_variance`` V are computed by summation over the final (rounded)
    schedule with the Almgren-Chriss parameters: E needs ``eta`` (with ``gamma``, ``epsilon``,
    default 0), V needs ``sigma``; a field whose parameters were not given is 0 (not computed).
    ``utility`` = E + risk_aversion * V. ``kappa`` (per unit of time) is the Almgren-Chriss
    urgency for "almgren_chriss" and 0 for the others.
  * The last slice is always built as X - (sum of the others), so the sequential sum of the
    slices is exactly X and holdings x_j = X - (n_1 + ... + n_j) end at exactly 0. Without a lot
    size the slices are the algorithm's exact fractions of X; with ``lot_size`` > 0 they are whole
    lots and the last slice takes the remainder (``schedules.round_to_lots``).

The algorithms are declared once in ``ALGORITHMS``: a builder from validated inputs to the
unrounded schedule, the keyword arguments it requires, and a one-line summary for ListAlgorithms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from . import almgren_chriss as ac
from .schedules import finish_schedule, pov_quantities, twap_quantities, vwap_quantities

SIDES = {"buy": 1, "sell": -1}


@dataclass(frozen=True)
class ExecutionPlan:
    quantities: np.ndarray   # (N,) shares per slice, >= 0
    holdings: np.ndarray     # (N+1,) shares still to trade after slice j; holdings[0] = X, holdings[N] = 0
    times: np.ndarray        # (N+1,) t_j = j * tau
    expected_cost: float     # E (currency); 0 without eta
    cost_variance: float     # V (currency^2); 0 without sigma
    utility: float           # E + risk_aversion * V
    kappa: float             # Almgren-Chriss urgency (1 / time unit); 0 for other algorithms


class PlanInputs(NamedTuple):
    """Validated arguments handed to a builder."""
    quantity: float
    slices: int
    tau: float
    sigma: float | None
    eta_tilde: float | None
    risk_aversion: float
    volume_profile: np.ndarray | None
    participation: float | None
    expected_volumes: np.ndarray | None


class Schedule(NamedTuple):
    """A builder's output: the unrounded slices and the urgency kappa (0 if not applicable)."""
    quantities: np.ndarray
    kappa: float


@dataclass(frozen=True)
class AlgorithmSpec:
    build: Callable[[PlanInputs], Schedule]
    requires: tuple[str, ...]   # keyword arguments that must be given
    summary: str


def _build_almgren_chriss(inputs: PlanInputs) -> Schedule:
    kappa_tau = ac.kappa_tau(inputs.sigma, inputs.eta_tilde, inputs.risk_aversion, inputs.tau)
    _, quantities = ac.trajectory(inputs.quantity, inputs.slices, kappa_tau)
    return Schedule(quantities, kappa_tau / inputs.tau)


def _build_twap(inputs: PlanInputs) -> Schedule:
    return Schedule(twap_quantities(inputs.quantity, inputs.slices), 0.0)


def _build_vwap(inputs: PlanInputs) -> Schedule:
    return Schedule(vwap_quantities(inputs.quantity, inputs.volume_profile), 0.0)


def _build_pov(inputs: PlanInputs) -> Schedule:
    return Schedule(pov_quantities(inputs.quantity, inputs.participation, inputs.expected_volumes), 0.0)


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "almgren_chriss": AlgorithmSpec(
        _build_almgren_chriss, ("sigma", "eta"),
        "Almgren-Chriss (2000) discrete mean-variance optimal schedule; risk_aversion 0 is TWAP"),
    "twap": AlgorithmSpec(_build_twap, (), "equal slices over the horizon"),
    "vwap": AlgorithmSpec(_build_vwap, ("volume_profile",),
                          "slices proportional to an intraday volume profile"),
    "pov": AlgorithmSpec(_build_pov, ("participation", "expected_volumes"),
                         "a fixed fraction of each slice's expected volume until the order is done"),
}


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _non_negative(name: str, value: float) -> float:
    value = float(value)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _per_slice(name: str, values, slices: int) -> np.ndarray:
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.shape != (slices,):
        raise ValueError(f"{name} must have one value per slice ({slices}), got shape {values.shape}")
    if not np.isfinite(values).all() or (values < 0.0).any():
        raise ValueError(f"{name} must be finite and >= 0")
    return values


def plan_execution(algorithm: str, side: str, quantity: float, slices: int, horizon: float,
                   lot_size: float = 0.0, *, sigma: float | None = None, eta: float | None = None,
                   gamma: float = 0.0, epsilon: float = 0.0, risk_aversion: float = 0.0,
                   volume_profile=None, participation: float | None = None,
                   expected_volumes=None) -> ExecutionPlan:
    """Plan a parent order of ``quantity`` shares in ``slices`` slices over ``horizon``."""
    spec = ALGORITHMS.get(algorithm)
    if spec is None:
        raise ValueError(f"algorithm must be one of {sorted(ALGORITHMS)}, got {algorithm!r}")
    if side not in SIDES:
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
    quantity = _positive("quantity", quantity)
    if isinstance(slices, bool) or int(slices) != slices or slices < 1:
        raise ValueError(f"slices must be an integer >= 1, got {slices!r}")
    slices = int(slices)
    tau = _positive("horizon", horizon) / slices
    lot_size = _non_negative("lot_size", lot_size)
    gamma = _non_negative("gamma", gamma)
    epsilon = _non_negative("epsilon", epsilon)
    risk_aversion = _non_negative("risk_aversion", risk_aversion)
    given = {"sigma": sigma, "eta": eta, "volume_profile": volume_profile,
             "participation": participation, "expected_volumes": expected_volumes}
    missing = [name for name in spec.requires if given[name] is None]
    if missing:
        raise ValueError(f"algorithm {algorithm!r} requires {', '.join(missing)}")
    if sigma is not None:
        sigma = _non_negative("sigma", sigma)
    eta_tilde = None
    if eta is not None:
        eta_tilde = ac.effective_eta(_positive("eta", eta), gamma, tau)
    if volume_profile is not None:
        volume_profile = _per_slice("volume_profile", volume_profile, slices)
        if not volume_profile.sum() > 0.0:
            raise ValueError("volume_profile must have a positive sum")
    if participation is not None:
        participation = float(participation)
        if not 0.0 < participation <= 1.0:
            raise ValueError(f"participation must be in (0, 1], got {participation!r}")
    if expected_volumes is not None:
        expected_volumes = _per_slice("expected_volumes", expected_volumes, slices)
        if participation is not None:
            capacity = participation * expected_volumes.sum()
            if capacity < quantity:
                raise ValueError(
                    f"expected_volumes too small to finish: participation {participation:g} x "
                    f"expected volume {expected_volumes.sum():.6g} = {capacity:.6g} shares < quantity "
                    f"{quantity:.6g}; {quantity - capacity:.6g} shares would be left")

    schedule = spec.build(PlanInputs(quantity, slices, tau, sigma, eta_tilde, risk_aversion,
                                     volume_profile, participation, expected_volumes))
    quantities, holdings, times, sum_n2, sum_x2 = finish_schedule(schedule.quantities, quantity,
                                                                  lot_size, tau)
    expected = 0.0 if eta_tilde is None else ac.expected_cost(quantity, sum_n2, tau, eta_tilde, gamma,
                                                              epsilon)
    variance = 0.0 if sigma is None else ac.cost_variance(sum_x2, tau, sigma)
    utility = expected + risk_aversion * variance
    return ExecutionPlan(quantities, holdings, times, expected, variance, utility, schedule.kappa)
