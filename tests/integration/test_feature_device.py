"""FeatureRequest.device on a CPU-only worker: ``cpu``/``auto`` run and say ``cpu``; ``gpu`` is
refused with an actionable status instead of silently running on the CPU."""
from __future__ import annotations

import grpc
import pytest

from api_proto import realtime_pb2, realtime_pb2_grpc


def test_panel_device_on_a_cpu_worker(channel):
    stub = realtime_pb2_grpc.RealTimeServiceStub(channel)

    def request(device: str):
        return stub.ComputeFeatures(realtime_pb2.FeatureRequest(stock_codes=["000001.SZ", "600000.SH"],
                                                                feature_types=["sma_20"], device=device), timeout=60)

    assert request("cpu").device == "cpu" and request("auto").device == "cpu"
    with pytest.raises(grpc.RpcError) as caught:
        request("gpu")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value.details()
    assert "gpu" in caught.value.details() and "auto" in caught.value.details()
