"""A loaded model ready to serve Predict: fast CPU path, device chain and micro-batcher.

``ServingFactory`` turns a predictor from the model store into a ``ServingModel`` once per
model-cache miss; the cache keeps the result, so the ONNX export and the batcher's thread are
shared by every request for that model.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from utils.engine.backend import Backend
from utils.engine.models import BasePredictor
from utils.serving import device_chain
from utils.serving.batcher import BatchTimeout, Prediction, PredictBatcher
from utils.serving.device_chain import DeviceChain, DevicePools, PredictTimeout, PredictUnavailable, build_routes
from utils.serving.onnx_forest import fast_path, is_forest
from utils.serving.onnx_runtime import onnx_routes

log = logging.getLogger(__name__)


class ServingModel:
    def __init__(self, predictor: BasePredictor, chain: DeviceChain, metrics: Any,
                 max_batch_rows: int = 0, max_wait: float = 0.0, name: str = "model",
                 runtime: str = "native") -> None:
        self.predictor = predictor
        # "onnx" when the exported graph serves (PREDICT_RUNTIME=onnx), "compiled" for a forest on the
        # compiled kernel, else "native"
        self.runtime = runtime
        self.metadata = predictor.metadata()
        self.model_type = self.metadata.get("model_type", "")
        self.chain = chain
        self.metrics = metrics
        self.name = name
        self._batch_rows: dict[str, Any] = {}
        batchable = max_batch_rows > 0 and getattr(predictor, "history_rows", 0) == 0
        self.batcher = PredictBatcher(self._call, max_batch_rows, max_wait, name) if batchable else None

    def _call(self, features: np.ndarray, deadline: float | None = None) -> tuple[Prediction, str]:
        result, device = self.chain.run(features, deadline)
        histogram = self._batch_rows.get(device)
        if histogram is None:  # the labelled child once per device, not per call
            histogram = self._batch_rows[device] = self.metrics.predict_batch_rows.labels(
                model_type=self.model_type, device=device)
        histogram.observe(features.shape[0])
        return result, device

    def predict(self, features: np.ndarray, deadline: float | None = None) -> tuple[Prediction, str]:
        """This request's (predictions, probabilities) and the device that served them.

        ``deadline`` (time.monotonic) is the caller's own: past it, ``PredictTimeout``. Both
        failures of the chain name the model (services/errors.py maps them to a status).
        """
        try:
            return self._predict(features, deadline)
        except (PredictTimeout, PredictUnavailable) as exc:
            raise type(exc)(f"model {self.name!r}: {exc}") from None

    def _predict(self, features: np.ndarray, deadline: float | None) -> tuple[Prediction, str]:
        if self.batcher is None:
            return self._call(features, deadline)
        # Worst case inside the batch: the wait, then two attempts of ``timeout`` each.
        longest = self.batcher.max_wait + 2 * self.chain.timeout + 1.0
        budget = longest if deadline is None else min(longest, deadline - time.monotonic())
        try:
            return self.batcher.predict(features, budget)
        except BatchTimeout:
            raise PredictTimeout(f"no prediction within {budget:.3g} s (the request's deadline); "
                                 "the server is overloaded or the model call hangs") from None


class ServingFactory:
    """Builds ``ServingModel`` objects with the server's settings, metrics, resolved backend (where
    Predict may run) and device pools."""

    def __init__(self, settings: Any, metrics: Any, backend: Backend, pools: DevicePools | None = None,
                 use_onnx: bool = True, forest_compiler: str = "cc") -> None:
        self.settings = settings
        self.metrics = metrics
        self.backend = backend
        self.pools = pools or DevicePools()
        self.use_onnx = use_onnx
        self.runtime = getattr(settings, "predict_runtime", "native")
        self.forest_compiler = forest_compiler
        self._kernel: Any = None
        self._kernel_tried = False

    def forest_kernel(self) -> Any:
        """The compiled forest kernel, built on the first forest this server loads and kept in
        DATA_DIR/compiled-kernels (one per kernel source and compiler); None when it cannot be
        built (no C compiler): forests are then served by ONNX Runtime / scikit-learn."""
        if not self._kernel_tried:
            from utils.engine.models.compiled_forest import CompileUnavailable, load_kernel
            self._kernel_tried = True
            try:
                self._kernel = load_kernel(Path(self.settings.data_dir) / "compiled-kernels", self.forest_compiler)
            except CompileUnavailable as exc:
                log.warning("random forests are served without the compiled kernel: %s", exc)
        return self._kernel

    def __call__(self, predictor: BasePredictor, name: str = "model") -> ServingModel:
        gpu = device_chain.serving_gpu(self.backend)
        routes = onnx_routes(predictor, gpu) if self.runtime == "onnx" else None
        runtime = "native" if routes is None else "onnx"
        if routes is None:
            kernel = self.forest_kernel() if is_forest(predictor) else None
            fast = fast_path(predictor, self.use_onnx, kernel)
            if getattr(getattr(fast, "__self__", None), "compiled", None) is not None:
                runtime = "compiled"  # PredictResponse.runtime: the forest kernel serves it
            routes = build_routes(predictor, fast, gpu)
        chain = DeviceChain(routes, self.settings.predict_timeout_seconds, self.pools,
                            self.metrics.predict_fallbacks)
        return ServingModel(predictor, chain, self.metrics, self.settings.predict_max_batch_rows,
                            self.settings.predict_max_wait_ms / 1000.0, name, runtime)
