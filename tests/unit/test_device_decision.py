"""Only the worker's (or server's) resolved Backend decides the device: model code and the Predict
device chain ask it and never probe CUDA themselves."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry

from config.settings import load_settings
from utils.engine.backend import Backend, BackendUnavailable, cpu_backend
from utils.engine.models import ModelConfig, train_model
from utils.monitoring import Metrics
from utils.serving.device_chain import serving_gpu
from utils.serving.serving_model import ServingFactory


PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


def _ours(filename: str) -> bool:
    return filename.startswith(PROJECT_ROOT) and "site-packages" not in filename


@pytest.fixture
def torch_reports_a_gpu(monkeypatch):
    """torch tells our code it has one CUDA device; anything that would initialise CUDA fails the
    test. Returns the probes our code made. torch's own callers (the optimizer's graph-capture
    check) get the true answer: lying to them sends a CUDA build without a GPU into the runtime."""
    calls: list[str] = []

    def sentinel(name, value):
        truth = getattr(torch.cuda, name)

        def probe(*args, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if not _ours(caller):
                return truth(*args, **kwargs)
            calls.append(f"torch.cuda.{name} from {caller}")
            return value
        return probe

    def refusal(name):  # one function per name: torch's tracing rules refuse a shared one
        def refuse(*args, **kwargs):
            raise AssertionError(f"torch.cuda.{name} called on a CPU backend")
        return refuse

    monkeypatch.setattr(torch.cuda, "is_available", sentinel("is_available", True))
    monkeypatch.setattr(torch.cuda, "device_count", sentinel("device_count", 1))
    for name in ("_lazy_init", "set_device", "current_device"):
        monkeypatch.setattr(torch.cuda, name, refusal(name))
    return calls


def _lagged_columns(n_rows: int = 120) -> dict[str, np.ndarray]:
    features = np.random.default_rng(0).standard_normal((n_rows, 2))
    target = np.zeros(n_rows)
    target[2:] = (features[:-2, 0] > 0).astype(float)
    return {"f0": features[:, 0], "f1": features[:, 1], "target": target}


def test_a_cpu_backend_never_touches_cuda_even_when_torch_reports_it(torch_reports_a_gpu):
    config = ModelConfig(model_type="lstm", feature_columns=("f0", "f1"), target_column="target", device="auto",
                         params={"window": 4, "epochs": 2, "hidden_size": 4, "batch_size": 32})
    columns = _lagged_columns()
    predictor, report = train_model(config, columns, cpu_backend())
    assert report.device == "cpu" and predictor.metadata()["device"] == "cpu"
    assert {parameter.device.type for parameter in predictor.network.parameters()} == {"cpu"}

    placed: list[str] = []
    predictor.to_device = placed.append  # a GPU path the chain must not take on a CPU backend
    settings = load_settings(compute_device="cpu", redis_embedded="never")
    serving = ServingFactory(settings, Metrics(CollectorRegistry()), cpu_backend())(predictor, "m-cpu")
    assert [route.device for route in serving.chain.routes] == ["cpu"] and placed == []
    features = np.column_stack([columns["f0"][:10], columns["f1"][:10]])
    (predictions, _), device = serving.predict(features)
    assert device == "cpu" and predictions.shape == (10,)
    assert torch_reports_a_gpu == []  # none of our code even asked torch about CUDA


def test_decisions_of_a_gpu_backend():
    without_torch_cuda = Backend(name="gpu", xp=np, device_id=1)
    assert without_torch_cuda.torch_device("auto") == torch.device("cpu")
    with pytest.raises(BackendUnavailable, match="torch sees no CUDA"):
        without_torch_cuda.torch_device("gpu", "lstm")
    with_torch_cuda = Backend(name="gpu", xp=np, device_id=1, torch_cuda=True)
    assert with_torch_cuda.torch_device("auto") == torch.device("cuda", 1)
    assert with_torch_cuda.torch_device("cpu") == torch.device("cpu")
    assert with_torch_cuda.gpu_ordinal == 1 and serving_gpu(with_torch_cuda) == "gpu:1"
    # LightGBM's pip build has no CUDA learner: auto stays on the CPU even on a GPU backend
    assert with_torch_cuda.lightgbm_device("auto") == ({}, "cpu")
    assert with_torch_cuda.cuml("auto") is None  # no cuML installed: the scikit-learn forest
    assert with_torch_cuda.for_request("auto") is with_torch_cuda and with_torch_cuda.for_request("gpu").is_gpu
    assert with_torch_cuda.for_request("cpu") == cpu_backend()


def test_decisions_of_a_cpu_backend():
    backend = cpu_backend()
    assert backend.gpu_ordinal is None and serving_gpu(backend) is None
    assert backend.torch_device("auto") == torch.device("cpu")
    assert backend.lightgbm_device("auto") == ({}, "cpu") and backend.cuml("auto") is None
    assert backend.for_request("auto") == backend
    for choose in (backend.torch_device, backend.lightgbm_device, backend.cuml, backend.for_request):
        with pytest.raises(BackendUnavailable, match="no GPU backend"):
            choose("gpu", "a model")
