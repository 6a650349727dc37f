"""Order execution: Almgren-Chriss, TWAP, VWAP and POV plans, and a bar-level fill simulator."""
from .simulator import ImpactModel, OrderResult, simulate_order, step_fill, typical_prices

__all__ = ["ImpactModel", "OrderResult", "simulate_order", "step_fill", "typical_prices"]
