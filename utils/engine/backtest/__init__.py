"""Backtesting: strategy signals, sleeve and rebalancing simulators, sweeps, and the runner over bars."""
from utils.engine.backtest.config import (StrategySpec, list_strategies, target_positions,
                                          validate_strategy_config, warmup_bars)
from utils.engine.backtest.runner import BacktestReport, NoDataInRange, TradeRecord, run_backtest
from utils.engine.backtest.simulate import BacktestOutput, SimulationConfig, Trade, simulate_portfolio
from utils.engine.backtest.strategies import UnknownStrategyError

__all__ = ["BacktestOutput", "BacktestReport", "NoDataInRange", "SimulationConfig", "StrategySpec", "Trade",
           "TradeRecord", "UnknownStrategyError", "list_strategies", "run_backtest",
           "simulate_portfolio", "target_positions", "validate_strategy_config", "warmup_bars"]
