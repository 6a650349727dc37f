"""Backtesting: strategy signals, the long/flat portfolio simulator, and the runner over bars."""
from utils.engine.backtest.runner import BacktestReport, NoDataInRange, TradeRecord, run_backtest
from utils.engine.backtest.simulate import BacktestOutput, Trade, simulate_portfolio
from utils.engine.backtest.strategies import (StrategySpec, UnknownStrategyError, list_strategies,
                                              target_positions, validate_strategy_config,
                                              warmup_bars)

__all__ = ["BacktestOutput", "BacktestReport", "NoDataInRange", "StrategySpec", "Trade",
           "TradeRecord", "UnknownStrategyError", "list_strategies", "run_backtest",
           "simulate_portfolio", "target_positions", "validate_strategy_config", "warmup_bars"]
