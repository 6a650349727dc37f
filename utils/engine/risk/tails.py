"""Tail measures of a sample of returns: VaR and CVaR exactly as Riskfolio-Lib's ``VaR_Hist`` / ``CVaR_Hist``.

The tail holds the ``k = ceil(alpha * n)`` lowest returns, ``alpha = 1 - confidence``. VaR is minus the
k-th lowest return (``numpy.quantile(method="inverted_cdf")``); CVaR is its Rockafellar-Uryasev form
``VaR + sum(max(-r - VaR, 0)) / (alpha * n)``, accumulated in Riskfolio's order (lowest first).

Floating point: ``1 - 0.95`` is 0.050000000000000044, so ``ceil((1 - 0.95) * 100)`` is 6, not 5 (skfolio,
and Riskfolio or numpy given that alpha, take the next order statistic for that reason). Here alpha is the
decimal complement of the confidence as written (``repr``: 0.95 -> 0.05) and k is counted in exact
rational arithmetic, so a 95 % VaR of 100 returns is always the 5th worst; this equals Riskfolio called
with ``alpha=0.05``.
"""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from types import ModuleType
from typing import Any


def tail_fraction(confidence: float) -> Fraction:
    """``1 - confidence`` exactly, the confidence read as the shortest decimal that prints it."""
    return 1 - Fraction(Decimal(repr(float(confidence))))


def tail_alpha(confidence: float) -> float:
    """``1 - confidence`` as the float nearest the decimal complement (0.95 -> 0.05, not 0.050000000000000044)."""
    return float(tail_fraction(confidence))


def tail_count(confidence: float, observations: int) -> int:
    """How many of ``observations`` returns form the tail: ``ceil(alpha * n)``, counted exactly, at least 1."""
    alpha = tail_fraction(confidence)
    return max(1, -(-alpha.numerator * observations // alpha.denominator))


def lowest_sorted(returns: Any, count: int, xp: ModuleType) -> Any:
    """The ``count`` lowest returns in ascending order (a partition first: O(n), not a full sort)."""
    if count < returns.shape[0]:
        returns = xp.partition(returns, count - 1)[:count]
    return xp.sort(returns)


def _riskfolio_excess_sum(tail: list[float]) -> float:
    """sum(r_i - VaR threshold) over the tail, accumulated as Riskfolio's loop does, ``(s + r_i) - r_k``
    left to right, so CVaR matches it bit for bit (Python floats are the same IEEE doubles)."""
    threshold = tail[-1]
    total = 0.0
    for value in tail:
        total = total + value - threshold
    return total


def var_cvar(returns: Any, confidence: float, xp: ModuleType) -> tuple[float, float]:
    """(VaR, CVaR) of a 1-D sample of returns as positive loss fractions (see the module docstring).
    Only the k tail values leave the device (k = 50,000 for 10^6 scenarios at 95 %)."""
    observations = int(returns.shape[0])
    count = tail_count(confidence, observations)
    tail = lowest_sorted(returns, count, xp).tolist()
    value_at_risk = -tail[-1]
    conditional = value_at_risk - _riskfolio_excess_sum(tail) / (tail_alpha(confidence) * observations)
    return value_at_risk, conditional
