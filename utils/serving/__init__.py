"""Predict's in-process model-serving runtime: model cache, device chain (GPU -> CPU), ONNX
forest fast path and micro-batcher. No gRPC here: failures are domain exceptions
(``PredictTimeout``, ``PredictUnavailable``) that ``services/errors.py`` maps to a status."""
