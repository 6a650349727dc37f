"""Factor evaluation on (T, N) panels, alphalens-exact: ``analyze_factor`` is the entry point."""
from .analysis import FactorAnalysis, PeriodStats, analyze_factor
from .cleaning import BinningFailed, FactorLoss, MaxLossExceeded

__all__ = ["analyze_factor", "FactorAnalysis", "PeriodStats", "FactorLoss", "MaxLossExceeded",
           "BinningFailed"]
