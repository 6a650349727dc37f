"""The service path on the simulated GPU (GPU_SIMULATOR=1): a real Redis, the gRPC server and a
worker whose backend is numba's CUDA simulator. A panel ComputeFeatures with ``device: "gpu"``
runs the CUDA indicator kernels and equals the CPU job and the per-symbol (host) requests
exactly; the response says which device ran it."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from api_proto import market_data_pb2, market_data_pb2_grpc, realtime_pb2, realtime_pb2_grpc

FEATURES = ["sma_20", "ema_12", "rsi", "macd", "bollinger", "atr_14", "adx", "stoch", "obv", "vwap"]
SYMBOLS = ["G0", "G1", "G2"]


def _import_symbol(channel, symbol: str, days: np.ndarray, seed: int) -> None:
    close = 30 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.01, days.size)))
    bars = [market_data_pb2.Bar(time=str(d), open=c, high=c * 1.01, low=c * 0.99, close=c, volume=1000 + i)
            for i, (d, c) in enumerate(zip(days, close))]
    market_data_pb2_grpc.MarketDataServiceStub(channel).ImportBars(
        market_data_pb2.ImportBarsRequest(symbol=symbol, bars=bars))


def _values(response) -> dict[str, dict[str, float]]:
    return {symbol: dict(entry.features) for symbol, entry in response.panel.items()}


def test_features_on_the_simulated_gpu_equal_the_cpu(simulated_gpu_channel):
    calendar = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-04-01"))  # 91 bars: fast in Python
    for seed, symbol in enumerate(SYMBOLS):
        _import_symbol(simulated_gpu_channel, symbol, calendar, seed)
    stub = realtime_pb2_grpc.RealTimeServiceStub(simulated_gpu_channel)

    def panel(device: str):
        return stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_codes=SYMBOLS, feature_types=FEATURES,
                                                                device=device), timeout=120)

    gpu, cpu, auto = panel("gpu"), panel("cpu"), panel("")
    assert gpu.device == "gpu:0 (simulated)" and auto.device == "gpu:0 (simulated)" and cpu.device == "cpu"
    assert gpu.task_id != cpu.task_id
    gpu_values, cpu_values = _values(gpu), _values(cpu)
    assert set(gpu_values) == set(SYMBOLS) and gpu_values.keys() == cpu_values.keys()
    finite = 0
    for symbol in SYMBOLS:
        single = stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_code=symbol, feature_types=FEATURES))
        assert set(gpu_values[symbol]) == set(cpu_values[symbol]) == set(single.features)
        for key, value in single.features.items():
            assert np.array_equal(gpu_values[symbol][key], cpu_values[symbol][key], equal_nan=True), (symbol, key)
            assert np.array_equal(gpu_values[symbol][key], value, equal_nan=True), (symbol, key)
            finite += np.isfinite(value)
    assert finite > 0.9 * sum(len(v) for v in gpu_values.values())


def test_device_is_validated(simulated_gpu_channel):
    stub = realtime_pb2_grpc.RealTimeServiceStub(simulated_gpu_channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_codes=["000001.SZ"], feature_types=["sma"],
                                                         device="tpu"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "device" in caught.value.details()
