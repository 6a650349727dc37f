"""The optimisation problem (inputs, validated once) and its result."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np


def _per_asset(bound, n_assets: int, name: str) -> np.ndarray:
    values = np.broadcast_to(np.asarray(bound, dtype=np.float64), (n_assets,)).copy()
    if np.isnan(values).any():
        raise ValueError(f"{name} has NaN entries")
    return values


@dataclass(frozen=True)
class PortfolioProblem:
    """Expected returns ``mu`` (N,) and covariance ``cov`` (N, N), both annualised, plus constraints.

    ``weight_lower``/``weight_upper``: a scalar or one bound per asset (±inf for none).
    ``sector_of``: an int sector per asset; ``sector_lower``/``sector_upper`` map a sector to the
    bound on its summed weight (pypfopt ``add_sector_constraints``). ``l2_gamma`` adds
    γ·‖w‖² to the objective (pypfopt ``L2_reg``). ``max_turnover`` bounds Σ|w − previous_weights|.
    ``returns``: (T, N) scenario returns for ``min_cvar`` (dates with any NaN are dropped).
    """

    mu: np.ndarray
    cov: np.ndarray
    weight_lower: float | np.ndarray = 0.0
    weight_upper: float | np.ndarray = 1.0
    sector_of: np.ndarray | None = None
    sector_lower: Mapping[int, float] = field(default_factory=dict)
    sector_upper: Mapping[int, float] = field(default_factory=dict)
    l2_gamma: float = 0.0
    previous_weights: np.ndarray | None = None
    max_turnover: float | None = None
    risk_free_rate: float = 0.0
    returns: np.ndarray | None = None

    def __post_init__(self):
        mu = np.asarray(self.mu, dtype=np.float64).ravel()
        cov = np.asarray(self.cov, dtype=np.float64)
        n_assets = mu.shape[0]
        if n_assets == 0:
            raise ValueError("mu is empty: the problem needs at least one asset")
        if cov.shape != (n_assets, n_assets):
            raise ValueError(f"cov must be square and match mu: mu has {n_assets} assets, "
                             f"cov has shape {cov.shape}")
        if not np.all(np.isfinite(mu)):
            raise ValueError(f"mu has non-finite entries at assets {np.flatnonzero(~np.isfinite(mu)).tolist()}")
        if not np.all(np.isfinite(cov)):
            raise ValueError("cov has NaN or infinite entries")
        if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-14):
            raise ValueError("cov must be symmetric")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "weight_lower", _per_asset(self.weight_lower, n_assets, "weight_lower"))
        object.__setattr__(self, "weight_upper", _per_asset(self.weight_upper, n_assets, "weight_upper"))
        self._validate_sectors(n_assets)
        self._validate_turnover(n_assets)
        if not (np.isfinite(self.l2_gamma) and self.l2_gamma >= 0):
            raise ValueError(f"l2_gamma must be a non-negative number, got {self.l2_gamma}")
        if self.returns is not None:
            returns = np.asarray(self.returns, dtype=np.float64)
            if returns.ndim != 2 or returns.shape[1] != n_assets:
                raise ValueError(f"returns must be (dates, {n_assets}), got shape {returns.shape}")
            object.__setattr__(self, "returns", returns)

    def _validate_sectors(self, n_assets: int) -> None:
        if self.sector_of is None:
            if self.sector_lower or self.sector_upper:
                raise ValueError("sector_lower/sector_upper need sector_of (a sector index per asset)")
        else:
            sector_of = np.asarray(self.sector_of)
            if sector_of.shape != (n_assets,) or not np.issubdtype(sector_of.dtype, np.integer):
                raise ValueError(f"sector_of must be {n_assets} integer sector indices, "
                                 f"got {sector_of.dtype} of shape {sector_of.shape}")
            object.__setattr__(self, "sector_of", sector_of)
        for name in ("sector_lower", "sector_upper"):
            bounds = {int(sector): float(value) for sector, value in dict(getattr(self, name)).items()}
            if any(np.isnan(value) for value in bounds.values()):
                raise ValueError(f"{name} has NaN bounds")
            object.__setattr__(self, name, MappingProxyType(bounds))

    def _validate_turnover(self, n_assets: int) -> None:
        if self.previous_weights is not None:
            previous = np.asarray(self.previous_weights, dtype=np.float64).ravel()
            if previous.shape != (n_assets,) or not np.all(np.isfinite(previous)):
                raise ValueError(f"previous_weights must be {n_assets} finite weights")
            object.__setattr__(self, "previous_weights", previous)
        if self.max_turnover is not None:
            if self.previous_weights is None:
                raise ValueError("max_turnover needs previous_weights")
            if not (np.isfinite(self.max_turnover) and self.max_turnover >= 0):
                raise ValueError(f"max_turnover must be a non-negative number, got {self.max_turnover}")

    @property
    def n_assets(self) -> int:
        return self.mu.shape[0]

    def sector_members(self, sector: int) -> np.ndarray:
        """Boolean mask of the assets in ``sector`` (an unknown sector has no members)."""
        return np.asarray(self.sector_of) == sector


@dataclass(frozen=True)
class OptimizationResult:
    """Weights and how they were found; ``objective`` is the minimised value as the solver saw it."""

    weights: np.ndarray
    status: str
    solver: str
    objective: float
    objective_name: str
    iterations: int = 0
    solve_seconds: float = 0.0
