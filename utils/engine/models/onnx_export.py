"""A trained predictor as one ONNX graph that takes the raw feature columns and returns what
Predict returns.

Input: ``features`` float32 [rows, features] in ``feature_columns`` order (a sequence model:
``windows`` float32 [rows, window, features], each window time-ascending, one prediction per
window). Outputs: ``predictions`` float64 [rows] (regression values, or the class labels
themselves for a classifier, never the 0..k-1 codes the estimators were fitted on) and, for a
classifier, ``probabilities`` float64 [rows, classes] in the order of the model's ``classes``.
Everything the predictor does around its estimator is inside the graph: the linear models'
StandardScaler (a step of the exported pipeline), the sequence models' feature standardisation,
regression-target inverse scaling and softmax, and every classifier's code -> label mapping
(ArgMax over the probabilities, first class on a tie as numpy's argmax, then a Gather).

Arithmetic is float32 (ONNX-ML tree ensembles and the networks run in it); the outputs are
widened to float64 only so labels stay exact. How close that is to the native model, per type,
is stated and tested in tests/unit/test_onnx_export.py.

Converters: scikit-learn forests and linear pipelines with skl2onnx; LightGBM boosters with
onnxmltools; the torch networks with ``torch.onnx.export(dynamo=False)`` (the dynamo exporter
needs onnxscript). Imported on first use, so the model package loads without them.
"""
from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import BasePredictor
from .gradient_boosting import GradientBoostingPredictor
from .linear import StandardisedLinearPredictor
from .random_forest import RandomForestPredictor

OPSET = 17
LIGHTGBM_OPSET = 15  # the newest onnxmltools 1.16's LightGBM converter supports
ML_OPSET = 3  # ai.onnx.ml: TreeEnsemble*, LinearClassifier/Regressor, Scaler
FEATURES, WINDOWS = "features", "windows"
PREDICTIONS, PROBABILITIES = "predictions", "probabilities"
_RAW = "estimator_"  # prefix of a converter's own output names, kept inside the graph


class NotExportable(Exception):
    """This model type (or this fitted model) has no ONNX form; the message names the type."""


@dataclass(frozen=True)
class OnnxModel:
    content: bytes  # a serialized onnx.ModelProto
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    opset: int
    feature_columns: tuple[str, ...]
    window: int = 0  # a sequence model's rows per window (the input's middle axis); 0 otherwise


def export_onnx(predictor: BasePredictor) -> OnnxModel:
    """The ONNX graph of a fitted ``predictor``; ``NotExportable`` for a type without one."""
    from .sequence import SequencePredictor  # torch-free import; torch loads inside _sequence_graph
    columns = tuple(predictor.config.feature_columns)
    if isinstance(predictor, SequencePredictor):
        return OnnxModel(_sequence_graph(predictor), (WINDOWS,), _output_names(predictor), OPSET, columns,
                         predictor.window)
    if isinstance(predictor, RandomForestPredictor):
        graph = _sklearn_graph(predictor.estimator, predictor, len(columns))
    elif isinstance(predictor, StandardisedLinearPredictor):
        graph = _sklearn_graph(predictor.pipeline, predictor, len(columns))
    elif isinstance(predictor, GradientBoostingPredictor):
        graph = _lightgbm_graph(predictor, len(columns))
    else:
        raise NotExportable(f"model type {predictor.model_type!r} cannot be exported to ONNX")
    opset = next(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx"))
    return OnnxModel(graph.SerializeToString(), (FEATURES,), _output_names(predictor), opset, columns)


def _output_names(predictor: BasePredictor) -> tuple[str, ...]:
    return (PREDICTIONS, PROBABILITIES) if predictor.task == "classification" else (PREDICTIONS,)


def _fitted(estimator: Any, predictor: BasePredictor) -> Any:
    if estimator is None:
        raise NotExportable(f"{predictor.model_type} predictor is not fitted")
    return estimator


def _converter(module: str, predictor: BasePredictor) -> Any:
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NotExportable(f"model type {predictor.model_type!r} needs {module.split('.')[0]} to export "
                            f"(requirements.txt)") from None


def _sklearn_graph(estimator: Any, predictor: BasePredictor, n_features: int) -> Any:
    to_onnx = _converter("skl2onnx", predictor).to_onnx
    estimator = _fitted(estimator, predictor)
    classifier = predictor.task == "classification"
    options = {id(estimator): {"zipmap": False}} if classifier else None
    model = to_onnx(estimator, np.zeros((1, n_features), dtype=np.float32), options=options,
                    target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET})
    _rename_input(model, FEATURES)
    return _finish(model, predictor)


def _lightgbm_graph(predictor: GradientBoostingPredictor, n_features: int) -> Any:
    convert_lightgbm = _converter("onnxmltools.convert", predictor).convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType
    booster = _fitted(predictor.booster, predictor)
    if predictor.task == "classification" and predictor.classes.size < 2:
        raise NotExportable("gradient_boosting with a single class has no ONNX form (it always predicts it)")
    model = convert_lightgbm(booster, initial_types=[(FEATURES, FloatTensorType([None, n_features]))],
                             zipmap=False, target_opset=LIGHTGBM_OPSET)
    return _finish(model, predictor)


def _rename_input(model: Any, name: str) -> None:
    old = model.graph.input[0].name
    model.graph.input[0].name = name
    for node in model.graph.node:
        node.input[:] = [name if value == old else value for value in node.input]


def _finish(model: Any, predictor: BasePredictor) -> Any:
    """Replace a converter's outputs (label codes + probabilities, or a [rows, 1] value) with
    ``predictions`` (float64 labels or values) and float64 ``probabilities``."""
    from onnx import TensorProto, helper, numpy_helper
    graph = model.graph
    raw = {output.name: _RAW + output.name for output in graph.output}
    for node in graph.node:
        node.output[:] = [raw.get(value, value) for value in node.output]
        node.input[:] = [raw.get(value, value) for value in node.input]
    names = [output.name for output in graph.output]
    del graph.output[:]
    if predictor.task == "classification":
        scores = _RAW + names[-1]  # skl2onnx and onnxmltools: (label, probabilities)
        classes = np.asarray(predictor.classes, dtype=np.float64)
        graph.initializer.append(numpy_helper.from_array(classes, "class_labels"))
        graph.node.extend([
            helper.make_node("ArgMax", [scores], ["class_index"], axis=1, keepdims=0),
            helper.make_node("Gather", ["class_labels", "class_index"], [PREDICTIONS], axis=0),
            helper.make_node("Cast", [scores], [PROBABILITIES], to=TensorProto.DOUBLE)])
        graph.output.extend([helper.make_tensor_value_info(PREDICTIONS, TensorProto.DOUBLE, [None]),
                             helper.make_tensor_value_info(PROBABILITIES, TensorProto.DOUBLE,
                                                           [None, int(classes.size)])])
    else:
        graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape"))
        graph.node.extend([
            helper.make_node("Reshape", [_RAW + names[0], "flat_shape"], ["flat_values"]),
            helper.make_node("Cast", ["flat_values"], [PREDICTIONS], to=TensorProto.DOUBLE)])
        graph.output.append(helper.make_tensor_value_info(PREDICTIONS, TensorProto.DOUBLE, [None]))
    _check(model)
    return model


def _check(model: Any) -> None:
    import onnx
    onnx.checker.check_model(model)


def _sequence_graph(predictor: Any) -> bytes:
    import torch
    if predictor.network is None:
        raise NotExportable(f"{predictor.model_type} predictor is not fitted")
    wrapper = _sequence_module()(predictor).eval()
    example = torch.zeros((2, predictor.window, len(predictor.config.feature_columns)), dtype=torch.float32)
    buffer = io.BytesIO()
    axes = {WINDOWS: {0: "rows"}, PREDICTIONS: {0: "rows"}, PROBABILITIES: {0: "rows"}}
    names = list(_output_names(predictor))
    # The encoder's inference fast path is one fused op with no ONNX form: trace the plain layers
    # (same arithmetic). A process-wide flag, so other threads' transformers are briefly slower.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape checks the graph does not need
            # dynamo=False: the TorchScript exporter (the dynamo one needs onnxscript, not installed)
            torch.onnx.export(wrapper, (example,), buffer, dynamo=False, input_names=[WINDOWS],
                              output_names=names, dynamic_axes={name: axes[name] for name in (WINDOWS, *names)},
                              opset_version=OPSET)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return buffer.getvalue()


def _sequence_module() -> type:
    import torch
    from torch import nn

    class SequenceGraph(nn.Module):
        """Raw windows -> the predictor's predictions (and probabilities): its scaler, network and
        output mapping in one module, on the CPU."""

        def __init__(self, predictor: Any) -> None:
            super().__init__()
            # a copy: moving the predictor's own network would take it off its device
            self.network = copy.deepcopy(predictor.network).to("cpu").eval()
            scaler = predictor.feature_scaler
            self.register_buffer("mean", torch.as_tensor(scaler.mean, dtype=torch.float32))
            self.register_buffer("scale", torch.as_tensor(scaler.scale, dtype=torch.float32))
            self.classifier = predictor.task == "classification"
            if self.classifier:
                self.register_buffer("classes", torch.as_tensor(np.asarray(predictor.classes, dtype=np.float64)))
            else:
                target = predictor.target_scaler
                self.register_buffer("target_mean", torch.as_tensor(target.mean, dtype=torch.float64))
                self.register_buffer("target_scale", torch.as_tensor(target.scale, dtype=torch.float64))

        def forward(self, windows: torch.Tensor) -> Any:
            outputs = self.network((windows - self.mean) / self.scale)
            if not self.classifier:
                return (outputs[:, 0].double() * self.target_scale + self.target_mean,)
            probabilities = torch.softmax(outputs, dim=1)
            return self.classes[torch.argmax(outputs, dim=1)], probabilities.double()

    return SequenceGraph
