"""Order execution: Almgren-Chriss, TWAP, VWAP and POV plans, and a bar-level fill simulator.

Arrays in, arrays and frozen dataclasses out; no gRPC, no Redis.
"""
from .metrics import METRIC_NAMES, batch_order_metrics, order_metrics
from .plan import ALGORITHMS, SIDES, AlgorithmSpec, ExecutionPlan, plan_execution
from .simulator import ImpactModel, OrderResult, simulate_order, step_fill, typical_prices
from .simulator_batch import BatchResult, simulate_orders

__all__ = ["ALGORITHMS", "AlgorithmSpec", "BatchResult", "ExecutionPlan", "ImpactModel",
           "METRIC_NAMES", "OrderResult", "SIDES", "batch_order_metrics", "order_metrics",
           "plan_execution", "simulate_order", "simulate_orders", "step_fill", "typical_prices"]
