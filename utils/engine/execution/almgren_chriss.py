"""Almgren & Chriss (2000), "Optimal execution of portfolio transactions": the discrete model.

Liquidate X shares in N slices over a horizon T; tau = T / N, t_j = j * tau, holdings x_j after
slice j (x_0 = X, x_N = 0), trades n_j = x_{j-1} - x_j. Linear impact:
  temporary h(n / tau) = epsilon * sgn(n) + (eta / tau) * n    (the fill price of slice j)
  permanent g(n / tau) = gamma * n / tau                        (the price moves by tau * g = gamma * n)
With eta~ = eta - gamma * tau / 2 (must be > 0, else the discrete problem is not convex), the cost
of a schedule with all n_j >= 0 has
  E = 1/2 gamma X^2 + epsilon X + (eta~ / tau) * sum_j n_j^2
  V = sigma^2 * tau * sum_{j=1..N} x_j^2
and the schedule minimising E + lambda * V is
  x_j = X sinh(kappa (T - t_j)) / sinh(kappa T),  (2 / tau^2) (cosh(kappa tau) - 1) = lambda sigma^2 / eta~.
lambda = 0 (or sigma = 0) gives kappa = 0 and the straight line x_j = X (1 - j / N) (TWAP).

Units: time in any unit (days, bars) with sigma in price / sqrt(time), eta in price * time / share,
gamma in price / share, epsilon in price. Costs are in price * shares (currency). For a buy the
same numbers hold by symmetry: holdings are the shares still to buy and E is the expected premium
paid over the arrival value X * S_0.

The trajectory kernel is compiled (numba) so a 390-slice plan costs a few microseconds; the
closed forms below (the paper's equations for E and V) are there to check it.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


def effective_eta(eta: float, gamma: float, tau: float) -> float:
    """eta~ = eta - gamma * tau / 2; ValueError when it is not positive."""
    eta_tilde = eta - 0.5 * gamma * tau
    if not eta_tilde > 0.0:
        raise ValueError(
            f"eta - gamma * tau / 2 = {eta_tilde:.6g} must be > 0 (eta={eta:.6g}, gamma={gamma:.6g}, "
            f"tau={tau:.6g}): the permanent impact makes the discrete problem non-convex; use more "
            f"slices (a shorter tau) or a smaller gamma")
    return eta_tilde


def kappa_tau(sigma: float, eta_tilde: float, risk_aversion: float, tau: float) -> float:
    """kappa * tau from (2 / tau^2)(cosh(kappa tau) - 1) = lambda sigma^2 / eta~ (kappa~^2)."""
    half_squared = 0.5 * risk_aversion * sigma * sigma / eta_tilde * tau * tau  # cosh(kappa tau) - 1
    # arccosh(1 + y) = log1p(y + sqrt(y (y + 2))): exact for small y where 1 + y would round
    return math.log1p(half_squared + math.sqrt(half_squared * (half_squared + 2.0)))


@njit(cache=True)
def trajectory(quantity, slices, kappa_tau):
    """Optimal holdings x_0..x_N (N+1,) and trades n_j = x_{j-1} - x_j (N,).

    x_j / X = sinh(a (N - j)) / sinh(a N) with a = kappa tau, written as
    exp(-a j) * expm1(-2 a (N - j)) / expm1(-2 a N) so that it neither overflows for large kappa T
    nor loses digits for small; a = 0 is the straight line.
    """
    holdings = np.empty(slices + 1)
    quantities = np.empty(slices)
    holdings[0] = quantity
    if kappa_tau == 0.0:
        for j in range(1, slices + 1):
            holdings[j] = quantity * (slices - j) / slices
    else:
        denominator = math.expm1(-2.0 * kappa_tau * slices)
        for j in range(1, slices + 1):
            holdings[j] = (quantity * math.exp(-kappa_tau * j)
                           * math.expm1(-2.0 * kappa_tau * (slices - j)) / denominator)
    for j in range(slices):
        quantities[j] = holdings[j] - holdings[j + 1]
    return holdings, quantities


def expected_cost(quantity: float, sum_trades_squared: float, tau: float, eta_tilde: float,
                  gamma: float, epsilon: float) -> float:
    """E = 1/2 gamma X^2 + epsilon X + (eta~ / tau) sum n_j^2 for a schedule with all n_j >= 0."""
    return 0.5 * gamma * quantity * quantity + epsilon * quantity + eta_tilde / tau * sum_trades_squared


def cost_variance(sum_holdings_squared: float, tau: float, sigma: float) -> float:
    """V = sigma^2 tau sum_{j=1..N} x_j^2."""
    return sigma * sigma * tau * sum_holdings_squared


def expected_cost_closed_form(quantity: float, horizon: float, slices: int, kappa: float,
                              eta_tilde: float, gamma: float, epsilon: float) -> float:
    """The paper's E of the optimal schedule:
    1/2 gamma X^2 + epsilon X + eta~ X^2 tanh(kappa tau / 2)(tau sinh(2 kappa T) + 2 T sinh(kappa tau))
    / (2 tau^2 sinh^2(kappa T)); kappa = 0 gives the TWAP value ... + eta~ X^2 / T."""
    tau = horizon / slices
    impact = 0.5 * gamma * quantity ** 2 + epsilon * quantity
    if kappa == 0.0:
        return impact + eta_tilde * quantity ** 2 / horizon
    kt = kappa * horizon
    return impact + eta_tilde * quantity ** 2 * math.tanh(0.5 * kappa * tau) * (
        tau * math.sinh(2.0 * kt) + 2.0 * horizon * math.sinh(kappa * tau)) / (
        2.0 * tau ** 2 * math.sinh(kt) ** 2)


def variance_closed_form(quantity: float, horizon: float, slices: int, kappa: float,
                         sigma: float) -> float:
    """The paper's V of the optimal schedule:
    1/2 sigma^2 X^2 (tau sinh(kappa T) cosh(kappa (T - tau)) - T sinh(kappa tau))
    / (sinh^2(kappa T) sinh(kappa tau)); kappa = 0 gives 1/3 sigma^2 X^2 T (1 - 1/N)(1 - 1/(2N))."""
    tau = horizon / slices
    if kappa == 0.0:
        return sigma ** 2 * quantity ** 2 * horizon * (1.0 - 1.0 / slices) * (1.0 - 0.5 / slices) / 3.0
    kt = kappa * horizon
    return 0.5 * sigma ** 2 * quantity ** 2 * (
        tau * math.sinh(kt) * math.cosh(kappa * (horizon - tau)) - horizon * math.sinh(kappa * tau)) / (
        math.sinh(kt) ** 2 * math.sinh(kappa * tau))
