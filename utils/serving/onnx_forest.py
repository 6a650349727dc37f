"""Serve a loaded random forest faster: ONNX Runtime for small classifier batches, one thread
for small native batches.

Measured on the 2-core bench machine (bench/ml.py, docs/benchmarks.md), a 100-tree forest:
ONNX Runtime's TreeEnsembleClassifier answers 1-64 rows in microseconds where scikit-learn
spends milliseconds per call (its per-call and per-tree overhead dominate), and ~2-6x faster at
1,024 rows, but it is slower than scikit-learn's threaded predict at 10,000 rows. So ORT serves
batches of at most ``ORT_MAX_ROWS`` rows and scikit-learn the rest (decided per call).

Agreement: ORT computes in float32, yet class labels stay identical to scikit-learn's. With
fully grown trees (the default) every leaf is pure, so a probability is votes / n_trees: the
integer votes are recovered from ORT's output and divided in float64 exactly as scikit-learn
does, which also settles exact ties (common: a 50/50 vote) the same way, first class first.
Otherwise the rows whose two highest probabilities lie within ``TIE_MARGIN`` are re-predicted
natively; the other rows' probabilities differ by < 1e-6. Regression stays native:
float32 sums differ from scikit-learn's float64 by up to ~5e-5 relative, more than the 1e-5
we promise (and ORT 1.32 refuses the double-precision regressor).

The model is exported at load time (once per model-cache miss, ~0.2-0.5 s for 100 deep trees);
when skl2onnx/onnxruntime are missing or the export fails, the native model serves everything.

Given a compiled forest kernel (``utils/engine/models/compiled_forest.py``), it serves every
batch size of classifiers and regressors instead: ~3.5x (classification) and ~5x (regression)
faster than scikit-learn at 10,000 rows, microseconds for a row, float64 sums (no float32
rounding), so no ONNX export is made. Labels stay scikit-learn's: pure leaves give the same vote
counts; otherwise rows within ``COMPILED_TIE_MARGIN`` of a tie are re-predicted natively.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Callable

import numpy as np

from utils.engine.models.onnx_export import FEATURES, PROBABILITIES, export_onnx

log = logging.getLogger(__name__)

ORT_MAX_ROWS = 2048
# Below this many rows one thread beats joblib's thread start-up (n_jobs=-1 costs ~10 ms a call).
NATIVE_PARALLEL_MIN_ROWS = 4096
TIE_MARGIN = 1e-4
# The kernel's sums differ from scikit-learn's only by summation order (~1e-16).
COMPILED_TIE_MARGIN = 1e-9

Prediction = tuple[np.ndarray, "np.ndarray | None"]


def _sklearn_forest(predictor: Any) -> Any:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    estimator = getattr(predictor, "estimator", None)
    return estimator if isinstance(estimator, (RandomForestClassifier, RandomForestRegressor)) else None


def is_forest(predictor: Any) -> bool:
    return _sklearn_forest(predictor) is not None


def _single_threaded(predictor: Any) -> Any:
    """A shallow copy of ``predictor`` whose forest predicts on one thread (the trees are shared)."""
    single = copy.copy(predictor)
    single.estimator = copy.copy(predictor.estimator)
    single.estimator.set_params(n_jobs=1)
    return single


def _pure_leaves(forest: Any) -> bool:
    """True when every leaf of every tree holds one class (fully grown trees, the default)."""
    for tree in forest.estimators_:
        leaves = tree.tree_.children_left == -1
        values = tree.tree_.value[leaves, 0, :]
        shares = values / values.sum(axis=1, keepdims=True)
        if not np.all((shares == 0.0) | (shares == 1.0)):
            return False
    return True


def onnx_session(predictor: Any) -> Any:
    """An ORT session on a forest classifier's exported graph (``export_onnx``: what ExportModel
    returns; its ``probabilities`` are the forest's, float32 widened to float64)."""
    import onnxruntime as ort
    model = export_onnx(predictor)
    options = ort.SessionOptions()
    # One thread per call: the server runs several calls at once, and at <= ORT_MAX_ROWS rows a
    # second thread measured slower on this machine.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.content, options, providers=["CPUExecutionProvider"])


class FastForest:
    """``predict(features) -> (predictions, probabilities)`` for a random-forest predictor."""

    bounded_cpu_work = True  # in-memory trees on the CPU: the device chain may call it inline

    def __init__(self, predictor: Any, use_onnx: bool = True, kernel: Any = None) -> None:
        self.predictor = predictor
        self.single = _single_threaded(predictor)
        self.classifier = getattr(predictor, "task", None) == "classification"
        self.session = None
        self.n_trees = len(predictor.estimator.estimators_)
        self.votes_only = self.classifier and _pure_leaves(predictor.estimator)
        self.compiled = _compiled(predictor, kernel) if kernel is not None else None
        if use_onnx and self.classifier and self.compiled is None:
            try:
                self.session = onnx_session(predictor)
            except Exception as exc:  # a missing package or an unsupported forest: stay native
                log.warning("ONNX export of %s failed (%s); serving it with scikit-learn",
                            type(predictor.estimator).__name__, exc)

    @property
    def runtime(self) -> str:
        if self.compiled is not None:
            return "compiled"
        return "onnxruntime" if self.session is not None else "sklearn"

    def native(self, features: np.ndarray) -> Prediction:
        predictor = self.predictor if features.shape[0] >= NATIVE_PARALLEL_MIN_ROWS else self.single
        if not self.classifier:
            return predictor.predict(features), None
        # One forest pass: scikit-learn's own predict is the argmax of predict_proba.
        probabilities = predictor.predict_proba(features)
        return np.asarray(self.predictor.classes)[np.argmax(probabilities, axis=1)], probabilities

    def _predict_compiled(self, features: np.ndarray) -> Prediction:
        mean = self.compiled.mean(features)
        if not self.classifier:
            return mean[:, 0], None
        predictions = np.asarray(self.predictor.classes)[np.argmax(mean, axis=1)]
        if not self.votes_only and mean.shape[1] > 1:
            top_two = np.partition(mean, -2, axis=1)[:, -2:]
            close = np.flatnonzero(top_two[:, 1] - top_two[:, 0] < COMPILED_TIE_MARGIN)
            if close.size:  # a near-tie could fall either way with another summation order
                predictions[close], mean[close] = self.native(features[close])
        return predictions, mean

    def predict(self, features: np.ndarray) -> Prediction:
        if self.compiled is not None:
            return self._predict_compiled(features)
        if self.session is None or features.shape[0] > ORT_MAX_ROWS:
            return self.native(features)
        probabilities = self.session.run([PROBABILITIES], {FEATURES: features.astype(np.float32)})[0]
        if self.votes_only:
            # Every leaf is pure, so scikit-learn's probabilities are votes / n_trees exactly:
            # recover the integer votes (float32 error << 0.5 vote) and divide as it does.
            votes = np.rint(probabilities.astype(np.float64) * self.n_trees)
            probabilities = votes / self.n_trees
            return np.asarray(self.predictor.classes)[np.argmax(votes, axis=1)], probabilities
        probabilities = probabilities.astype(np.float64)
        predictions = np.asarray(self.predictor.classes)[np.argmax(probabilities, axis=1)]
        if probabilities.shape[1] > 1:
            top_two = np.partition(probabilities, -2, axis=1)[:, -2:]
            close = np.flatnonzero(top_two[:, 1] - top_two[:, 0] < TIE_MARGIN)
            if close.size:  # near-ties: scikit-learn's own answer, so labels always agree
                predictions[close], probabilities[close] = self.native(features[close])
        return predictions, probabilities


def _compiled(predictor: Any, kernel: Any) -> Any:
    from utils.engine.models.compiled_forest import CompileUnavailable, CompiledForest
    try:
        return CompiledForest(predictor.estimator, kernel)
    except CompileUnavailable as exc:
        log.warning("forest of %s not compiled (%s); serving it without the kernel",
                    type(predictor.estimator).__name__, exc)
        return None


def fast_path(predictor: Any, use_onnx: bool = True, kernel: Any = None) -> Callable[[np.ndarray], Prediction] | None:
    """The faster ``predict`` for a scikit-learn random forest; None for any other model.
    ``kernel``: the compiled forest kernel (``compiled_forest.load_kernel``), when there is one."""
    if _sklearn_forest(predictor) is None:
        return None
    return FastForest(predictor, use_onnx, kernel).predict
