"""The gpu_quant SDK against the real server (Redis + gRPC on port 0 + an in-process worker).
Every number is checked against what the raw stubs return for the same job."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

import gpu_quant
from api_proto import (backtest_pb2, backtest_pb2_grpc, market_data_pb2, market_data_pb2_grpc, ml_pb2, ml_pb2_grpc,
                       realtime_pb2, realtime_pb2_grpc)
from gpu_quant import Client
from services.server import create_server
from tests.conftest import PROJECT_ROOT

GUIDE = {"strategy_type": "trend_following", "lookback_period": 20, "moving_average_window": 50}
SYMBOLS = ["000001.SZ", "600000.SH"]


@pytest.fixture
def client(platform):
    with Client(f"127.0.0.1:{platform.port}") as client:
        yield client


def test_backtest_wait_result_and_report_match_the_raw_stubs(client, channel, tmp_path):
    run = client.backtest(SYMBOLS, "2024-01-01", "2024-12-31", strategy=GUIDE, capital=1_000_000, commission=0.0003)
    assert run.job_id.startswith("bt-")
    final = run.wait(progress=True)
    assert final["status"] == "COMPLETED" and final["progress"] == 1.0 and final["task_type"] == "backtest"
    result = run.result()

    stub = backtest_pb2_grpc.BacktestServiceStub(channel)
    raw = stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=run.job_id, page_size=10_000))
    assert result.metrics["total_return"] == raw.performance_metrics.total_return
    assert result.metrics["num_trades"] == raw.performance_metrics.num_trades
    assert list(result.equity["equity"]) == [point.equity for point in raw.equity_curve]
    assert result.equity.index[0] == pd.Timestamp(raw.equity_curve[0].time)
    assert len(result.trades) == raw.total_trades == len(raw.trades) > 0
    assert list(result.trades["pnl"]) == [trade.pnl for trade in raw.trades]
    assert set(result.symbol_metrics.index) == set(SYMBOLS)
    assert result.strategy_config["moving_average_window"] == 50 and result.sweep.empty

    # every page is fetched: three trades a page gives the same table as one page
    paged = client.backtests.fetch_result(run.job_id, page_size=3)
    pd.testing.assert_frame_equal(paged.trades, result.trades)

    html = run.report(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == html
    assert html == stub.GetBacktestReport(backtest_pb2.BacktestReportRequest(backtest_id=run.job_id)).html


def test_sweep_returns_the_ranked_table(client):
    table = client.sweep(["000001.SZ"], "2023-01-01", "2024-12-31", {"strategy_type": "sma_crossover"},
                         {"fast": [5, 10], "slow": [20, 50]}, rank_by="sharpe_ratio", progress=False)
    assert list(table["rank"]) == [1, 2, 3, 4]
    assert {"fast", "slow", "sharpe_ratio", "total_return"} <= set(table.columns)
    assert table["sharpe_ratio"].is_monotonic_decreasing
    assert sorted(zip(table["fast"], table["slow"])) == [(5, 20), (5, 50), (10, 20), (10, 50)]
    best = client.backtests.handle(table.attrs["backtest_id"]).result()
    assert best.metrics["sharpe_ratio"] == table["sharpe_ratio"].iloc[0]


def _bars(count: int, start: str = "2021-03-01") -> pd.DataFrame:
    rng = np.random.default_rng(7)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.01, count)))
    return pd.DataFrame({"Date": pd.bdate_range(start, periods=count), "Open": close * 0.999, "High": close * 1.01,
                         "Low": close * 0.99, "Close": close, "Volume": rng.integers(1_000, 9_000, count)})


def test_bars_import_in_chunks_then_get(client, channel, tmp_path):
    bars = _bars(53)
    stored = client.bars.import_frame(bars, "SDK.TEST", chunk_rows=10, progress=True)
    assert stored["symbol"] == "SDK.TEST" and stored["rows"] == 53
    table = client.bars.get("SDK.TEST")
    assert list(table.index) == list(bars["Date"]) and np.allclose(table["close"], bars["Close"], rtol=0, atol=0)
    raw = market_data_pb2_grpc.MarketDataServiceStub(channel).GetBars(market_data_pb2.GetBarsRequest(symbol="SDK.TEST"))
    assert [bar.volume for bar in raw.bars] == list(table["volume"])

    # replace: only the new frame's bars remain, even when the import takes several chunks
    assert client.bars.import_frame(_bars(25, "2022-01-03"), "SDK.TEST", replace=True, chunk_rows=10,
                                    progress=False)["rows"] == 25
    window = client.bars.get("SDK.TEST", "2022-01-10", "2022-01-14")
    assert list(window.index.strftime("%Y-%m-%d")) == ["2022-01-10", "2022-01-11", "2022-01-12", "2022-01-13",
                                                        "2022-01-14"]

    # a CSV with a symbol column imports each symbol
    two = pd.concat([_bars(12).assign(symbol="CSV.A"), _bars(9).assign(symbol="CSV.B")])
    two.to_csv(tmp_path / "two.csv", index=False)
    imported = client.bars.import_csv(tmp_path / "two.csv", progress=False)
    assert {name: info["rows"] for name, info in imported.items()} == {"CSV.A": 12, "CSV.B": 9}
    listing = client.bars.ls().set_index("symbol")
    assert listing.loc["CSV.B", "rows"] == 9 and bool(listing.loc["000001.SZ", "synthetic"])


def test_features_and_stream_match_the_raw_stubs(client, channel):
    table = client.features("000001.SZ", ["sma_20", "rsi"], lookback=30)
    raw = realtime_pb2_grpc.RealTimeServiceStub(channel).ComputeFeatures(realtime_pb2.FeatureRequest(
        stock_code="000001.SZ", feature_types=["sma_20", "rsi"], lookback=30, return_series=True))
    assert len(table) == 30 and list(table.index.strftime("%Y-%m-%d")) == [t[:10] for t in raw.series_times]
    for key, series in raw.series.items():
        np.testing.assert_array_equal(table[key].to_numpy(), np.array(series.values))

    panel = client.features(["000001.SZ", "600000.SH"], ["sma_20", "rsi"])  # one job, latest values
    assert list(panel.index) == ["000001.SZ", "600000.SH"] and panel.attrs["task_id"]
    latest = client.realtime.latest("600000.SH", ["sma_20", "rsi"])
    assert panel.loc["600000.SH", "rsi"] == pytest.approx(latest["rsi"], rel=1e-12)

    ticks = [{"symbol": "TICK.A", "price": 10 + 0.1 * i, "volume": 100 + i,
              "timestamp": f"2025-01-02T09:{30 + i // 60:02d}:{i % 60:02d}"} for i in range(40)]
    one_by_one = list(client.stream(ticks, features=["sma_5", "rsi"]))
    assert [row["sequence"] for row in one_by_one] == list(range(1, 41))
    assert one_by_one[-1]["price"] == pytest.approx(13.9)
    assert one_by_one[-1]["sma_5"] == pytest.approx(np.mean([10 + 0.1 * i for i in range(35, 40)]))
    # columnar batches give the same values per tick (a new symbol: fresh state)
    batched = list(client.stream(pd.DataFrame(ticks).assign(symbol="TICK.B"), features=["sma_5", "rsi"], batch_size=16))
    assert [row["symbol"] for row in batched] == ["TICK.B"] * 40
    for single, batch in zip(one_by_one, batched):
        assert single["sma_5"] == pytest.approx(batch["sma_5"], nan_ok=True)
        assert single["rsi"] == pytest.approx(batch["rsi"], nan_ok=True)


def test_train_then_predict_on_a_frame(client, channel):
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"price": rng.normal(10, 1, 200), "rsi": rng.uniform(20, 80, 200)})
    data["target"] = (data["rsi"] > 50).astype(int)
    run = client.train("logistic", data, features=["price", "rsi"], target="target")
    assert run.wait(progress=False)["status"] == "COMPLETED"
    model_id = run.model_id
    assert model_id in set(client.models.ls()["model_id"])
    rows = pd.DataFrame({"price": [10.0, 11.0, 9.5], "rsi": [25.0, 75.0, 60.0]}, index=["a", "b", "c"])
    predicted = client.predict(model_id, rows)
    raw = ml_pb2_grpc.MLServiceStub(channel).Predict(ml_pb2.PredictRequest(
        model_id=model_id, input_data=json.dumps({"price": [10.0, 11.0, 9.5], "rsi": [25.0, 75.0, 60.0]})))
    assert list(predicted.index) == ["a", "b", "c"]
    assert list(predicted["prediction"]) == list(raw.predictions) == [0.0, 1.0, 1.0]
    assert np.allclose(predicted[["p_0", "p_1"]].sum(axis=1), 1.0)
    assert client.models.metrics(model_id)["model_type"] == "logistic"


def test_errors_are_typed_and_carry_the_server_message(client):
    with pytest.raises(gpu_quant.NotFound) as missing:
        client.backtests.handle("bt-nope").status()
    assert "bt-nope" in missing.value.message and missing.value.method == "GetJob"
    with pytest.raises(gpu_quant.InvalidArgument) as bad:
        client.backtest(SYMBOLS, "2024-12-31", "2024-01-01", strategy=GUIDE)
    assert "start_time" in bad.value.message or "end_time" in bad.value.message
    with pytest.raises(gpu_quant.NotFound):
        client.bars.get("NO.SUCH")
    # a job that fails on the worker: an order in a period without stored bars
    failing = client.execution.simulate([{"symbol": "000001.SZ", "side": "buy", "quantity": 10,
                                          "start_time": "2030-01-01", "end_time": "2030-01-02"}])
    with pytest.raises(gpu_quant.JobFailed) as failed:
        failing.result()
    assert failed.value.job["status"] == "FAILED" and "no stored bars" in failed.value.job["error_message"]


def test_jobs_listing_cancel_and_status(client):
    run = client.backtest(["000002.SZ"], "2024-01-01", "2024-12-31", strategy=GUIDE)
    run.wait(progress=False)
    listing = client.jobs.ls(task_type="backtest")
    assert run.job_id in set(listing["job_id"]) and listing.loc[listing["job_id"] == run.job_id, "status"].item() == "COMPLETED"
    assert client.jobs.cancel(run.job_id)["status"] == "COMPLETED"  # a final job stays as it is
    assert isinstance(client.job(run.job_id), gpu_quant.BacktestHandle)
    state = client.status()
    assert state["health"] == "SERVING" and state["queues"]["backtest"]["waiting"] == 0
    assert [worker["device"] for worker in state["workers"].values() if worker["alive"]] == ["cpu"]


def test_factor_portfolio_and_execution_services(client):
    plan = client.execution.plan("twap", "buy", 1000, slices=4, horizon=1.0)
    assert plan["quantities"] == [250.0] * 4 and plan["algorithm"] == "twap"
    analysis = client.factors.analyze(["000001.SZ", "600000.SH", "000002.SZ"], "2023-01-01", "2024-12-31",
                                      expression="-(close / ref(close, 5) - 1)", periods=[1, 5], quantiles=3)
    result = analysis.result()
    assert [period["period"] for period in result["periods"]] == [1, 5] and result["job_id"] == analysis.job_id
    weights = client.portfolio.optimize(["000001.SZ", "600000.SH", "000002.SZ"], "2022-01-01", "2024-12-31",
                                        objective="min_volatility")["weights"]
    assert set(weights) == {"000001.SZ", "600000.SH", "000002.SZ"} and sum(weights.values()) == pytest.approx(1.0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unavailable_is_retried_for_reads_and_raised_for_submissions(settings_factory, redis_client):
    port = _free_port()
    quick = gpu_quant.RetryPolicy(attempts=2, initial_backoff=0.05)
    with Client(f"127.0.0.1:{port}", retry=quick, timeout=5) as client:
        with pytest.raises(gpu_quant.Unavailable):
            client.bars.ls()                       # nobody listens: retried once, then typed
        with pytest.raises(gpu_quant.Unavailable):
            client.backtest(SYMBOLS, "2024-01-01", "2024-12-31", strategy=GUIDE)
    started = []
    starter = threading.Timer(0.8, lambda: started.append(create_server(settings_factory(grpc_port=port))))
    starter.start()
    try:
        patient = gpu_quant.RetryPolicy(attempts=12, initial_backoff=0.2, max_backoff=0.5)
        with Client(f"127.0.0.1:{port}", retry=patient, timeout=5) as client:
            assert client.bars.ls() is not None    # the server came up while the client backed off
            assert client.health() == "SERVING"
    finally:
        starter.join()
        for server in started:
            server.stop(grace=0)


def test_api_key_is_sent_as_the_server_expects(settings_factory, redis_client):
    key = "sdk-test-key-0123456789"
    server = create_server(settings_factory(api_keys=f"desk:{hashlib.sha256(key.encode()).hexdigest()}"))
    try:
        with Client(f"127.0.0.1:{server.port}") as anonymous:
            with pytest.raises(gpu_quant.Unauthenticated) as refused:
                anonymous.bars.ls()
            assert "API key" in refused.value.message
        with Client(f"127.0.0.1:{server.port}", api_key="wrong-key-0123456789") as wrong:
            with pytest.raises(gpu_quant.Unauthenticated):
                wrong.jobs.ls()
        with Client(f"127.0.0.1:{server.port}", api_key=key) as keyed:
            assert "000001.SZ" not in set(keyed.bars.ls()["symbol"])  # no sample data on this server
            assert keyed.health() == "SERVING"
    finally:
        server.stop(grace=0)


def test_quickstart_example_runs(target_env, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **target_env}
    ran = subprocess.run([sys.executable, str(PROJECT_ROOT / "examples" / "sdk_quickstart.py")], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "SERVING" in ran.stdout and "sharpe_ratio" in ran.stdout and "prediction" in ran.stdout
    assert (tmp_path / "sdk_quickstart_report.html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")


@pytest.fixture
def target_env(platform):
    return {"GQ_TARGET": f"127.0.0.1:{platform.port}"}


def test_mutual_tls_with_an_api_key(settings_factory, redis_client, tmp_path):
    from tests.integration.test_security import Pki
    (tmp_path / "pki").mkdir()
    pki = Pki(tmp_path / "pki")
    key = "sdk-tls-key-0123456789"
    server = create_server(settings_factory(
        tls_cert_file=pki.path("server_cert"), tls_key_file=pki.path("server_key"), tls_client_ca_file=pki.path("ca"),
        api_keys=f"desk:{hashlib.sha256(key.encode()).hexdigest()}"))
    try:
        target = f"localhost:{server.port}"
        tls = {"ca": pki.path("ca"), "cert": pki.client_cert, "key": pki.client_key}
        with Client(target, api_key=key, tls=tls) as client:
            assert client.health() == "SERVING" and client.bars.ls().empty
        quick = gpu_quant.RetryPolicy(attempts=1)
        with Client(target, api_key=key, tls=pki.path("ca"), retry=quick, timeout=10) as no_client_cert:
            with pytest.raises((gpu_quant.Unavailable, gpu_quant.RpcError)):
                no_client_cert.bars.ls()
        with Client(target, tls=tls) as no_key:
            with pytest.raises(gpu_quant.Unauthenticated):
                no_key.bars.ls()
    finally:
        server.stop(grace=0)
