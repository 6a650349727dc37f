"""The backtest service path on the simulated GPU (GPU_SIMULATOR=1; real Redis, gRPC server and
worker): an ``IntegratedBacktest`` with ``device: "gpu"`` and a parameter grid sweeps with the
CUDA sweep kernels and runs the best set with the CUDA sleeve kernel, and its result equals the
CPU engine's run of the same bars exactly (metrics, equity curve, trades, ranked sweep); the
result says which device ran it."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc, market_data_pb2, market_data_pb2_grpc
from services.backtest_service import metrics_message
from tests.conftest import wait_until
from utils.data.timeutil import parse_time
from utils.engine.backtest import validate_strategy_config
from utils.engine.backtest.runner import align_bars, report_of, simulate_spec
from utils.engine.backtest.sweep import best_spec, sweep_panels
from utils.queue import keys

SYMBOLS = ["S0", "S1", "S2"]
CONFIG = {"strategy_type": "sma_crossover", "param_grid": {"fast": [3, 5], "slow": [10, 20]},
          "direction": "long_short", "commission_min": 1.0, "stop_loss": 0.03, "slippage_bps": 2}
CAPITAL, COMMISSION = 300_000.0, 0.0005
START, END = "2024-01-15", "2024-03-31"


@pytest.fixture
def gpu_worker_channel(simulated_gpu_settings):
    """The gRPC server and a worker on the simulated GPU that registers as a GPU worker (so a
    request for ``device: "gpu"`` is accepted), as ``run_worker_process`` does."""
    from services.server import create_server
    from tests.conftest import InProcessWorker
    from utils.engine.backend import resolve_backend
    from utils.tasks.runtime import build_handlers

    settings = simulated_gpu_settings
    backend = resolve_backend(settings.compute_device, settings.gpu_device_id, simulator=settings.gpu_simulator)
    running = create_server(settings)
    worker = InProcessWorker(settings, build_handlers(settings, backend), device_label=backend.label).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    wait_until(lambda: backend.label in worker.queue.redis.hvals(keys.WORKERS), timeout=10)
    yield channel
    channel.close()
    worker.stop()
    running.stop(grace=0)


def _bars(days: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 30 * np.exp(np.cumsum(rng.normal(0, 0.02, days.size)))
    open_ = close * np.exp(rng.normal(0, 0.01, days.size))
    return {"time": days.astype("datetime64[ns]").astype(np.int64), "open": open_,
            "high": np.maximum(open_, close) * 1.01, "low": np.minimum(open_, close) * 0.99, "close": close,
            "volume": np.arange(days.size, dtype=np.float64) + 1000}


def _cpu_reference(bars: dict[str, dict[str, np.ndarray]]):
    spec = validate_strategy_config(CONFIG)
    aligned = align_bars(spec, bars, parse_time(START), parse_time(END))
    sweep = sweep_panels(spec, aligned.panels, aligned.start_index, CAPITAL, COMMISSION)
    best = best_spec(spec, sweep)
    output = simulate_spec(best, aligned, CAPITAL, COMMISSION)
    return sweep, report_of(best, aligned, output, CAPITAL)


def test_gpu_backtest_on_the_simulated_gpu_equals_the_cpu_engine(gpu_worker_channel):
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-04-01"))  # 91 bars: fast in Python
    bars = {symbol: _bars(days, seed) for seed, symbol in enumerate(SYMBOLS)}
    market = market_data_pb2_grpc.MarketDataServiceStub(gpu_worker_channel)
    for symbol, series in bars.items():
        market.ImportBars(market_data_pb2.ImportBarsRequest(symbol=symbol, bars=[
            market_data_pb2.Bar(time=str(day), open=o, high=h, low=low, close=c, volume=v)
            for day, o, h, low, c, v in zip(days, series["open"], series["high"], series["low"], series["close"],
                                            series["volume"])]))
    stub = backtest_pb2_grpc.BacktestServiceStub(gpu_worker_channel)
    response = stub.IntegratedBacktest(backtest_pb2.BacktestRequest(
        stock_codes=SYMBOLS, start_time=START, end_time=END, strategy_config=json.dumps(CONFIG),
        initial_capital=CAPITAL, commission_rate=COMMISSION, device="gpu"))
    status = wait_until(lambda: (s := stub.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
        backtest_id=response.backtest_id))).status in (backtest_pb2.COMPLETED, backtest_pb2.FAILED) and s,
        timeout=120)
    assert status.status == backtest_pb2.COMPLETED, status.error_message
    result = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=response.backtest_id))
    assert result.device == "gpu:0 (simulated)"

    sweep, report = _cpu_reference(bars)
    assert result.sweep_combinations == sweep.combinations == 4
    assert [(row.rank, dict(row.params), row.metrics) for row in result.sweep] == [
        (row["rank"], {name: str(value) for name, value in row["params"].items()}, metrics_message(row["metrics"]))
        for row in sweep.table]
    assert result.performance_metrics == metrics_message(report.metrics)
    assert [point.equity for point in result.equity_curve] == report.equity.tolist()
    assert len(report.trades) >= 4 and result.total_trades == len(report.trades)
    assert [(t.symbol, t.entry_time, t.entry_price, t.exit_price, t.size, t.pnl, t.exit_reason)
            for t in result.trades] == [(t.symbol, t.entry_time, t.entry_price, t.exit_price, t.size, t.pnl,
                                         t.exit_reason) for t in report.trades]
