"""Predict through ONNX Runtime (``PREDICT_RUNTIME=onnx``): the model's exported graph, exactly
the file ``ExportModel`` returns, serves every request (``PredictResponse.runtime = "onnx"``).

The graph is exported once per model-cache miss. Routes follow the device chain's rules: a
CUDAExecutionProvider session on the server's GPU when the backend is a GPU and onnxruntime has
CUDA, then a CPUExecutionProvider session (the fallback). A model without an ONNX form (or whose
export fails) is served natively and says so (``runtime = "native"``).

A sequence model's graph takes windows: the (rows, features) request is cut into its
``rows - window + 1`` time-ascending windows here, and the first ``window - 1`` rows get NaN,
as the native predictor returns them.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from utils.engine.models import InvalidInputData
from utils.engine.models.onnx_export import PROBABILITIES, NotExportable, OnnxModel, export_onnx
from utils.serving.device_chain import Prediction, Route

log = logging.getLogger(__name__)

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def providers(gpu: str | None = None) -> list[Any]:
    """CUDA first (on ``gpu``'s index) when one serves and onnxruntime has it, then the CPU."""
    import onnxruntime
    if gpu is None or CUDA not in onnxruntime.get_available_providers():
        return [CPU]
    index = int(gpu.rsplit(":", 1)[-1]) if ":" in gpu else 0
    return [(CUDA, {"device_id": index}), CPU]


def inference_session(content: bytes, provider_list: list[Any] | None = None) -> Any:
    import onnxruntime
    return onnxruntime.InferenceSession(content, providers=provider_list or [CPU])


class OnnxPredict:
    """``(features) -> (predictions, probabilities or None)`` on one ORT session of ``exported``."""

    def __init__(self, exported: OnnxModel, session: Any, model_type: str) -> None:
        self.exported = exported
        self.session = session
        self.model_type = model_type
        self.input = exported.input_names[0]
        self.classifier = PROBABILITIES in exported.output_names

    def _windows(self, features: np.ndarray) -> np.ndarray:
        window = self.exported.window
        if features.shape[0] < window:
            raise InvalidInputData(f"{self.model_type} predicts from windows of {window} rows: pass at least "
                                   f"{window} time-ordered rows (got {features.shape[0]}); the first "
                                   f"{window - 1} only serve as history")
        windows = np.lib.stride_tricks.sliding_window_view(features, window, axis=0)  # (n, features, window)
        return np.ascontiguousarray(windows.transpose(0, 2, 1))

    def __call__(self, features: np.ndarray) -> Prediction:
        values = np.asarray(features, dtype=np.float32)
        if self.exported.window:
            values = self._windows(values)
        outputs = self.session.run(list(self.exported.output_names), {self.input: values})
        predictions = outputs[0]
        probabilities = outputs[1] if self.classifier else None
        history = self.exported.window - 1 if self.exported.window else 0
        if history:
            predictions = np.concatenate([np.full(history, np.nan), predictions])
            if probabilities is not None:
                probabilities = np.concatenate([np.full((history, probabilities.shape[1]), np.nan), probabilities])
        return predictions, probabilities


def onnx_routes(predictor: Any, gpu: str | None) -> list[Route] | None:
    """The device chain for serving ``predictor``'s ONNX graph, or None when it has none."""
    try:
        exported = export_onnx(predictor)
    except NotExportable:
        return None
    except Exception as exc:  # a converter gap: serve it natively rather than not at all
        log.warning("ONNX export of %s failed (%s); serving it natively", predictor.model_type, exc)
        return None
    routes = []
    if gpu is not None and providers(gpu)[0] != CPU:
        try:
            session = inference_session(exported.content, providers(gpu))
            if CUDA in session.get_providers():  # ORT falls back to the CPU quietly when CUDA fails
                routes.append(Route(gpu, OnnxPredict(exported, session, predictor.model_type)))
        except Exception as exc:  # e.g. a CUDA library missing: the CPU session serves
            log.warning("no ONNX Runtime CUDA session for %s on %s (%s)", predictor.model_type, gpu, exc)
    cpu_session = inference_session(exported.content, [CPU])
    routes.append(Route("cpu", OnnxPredict(exported, cpu_session, predictor.model_type)))
    return routes
