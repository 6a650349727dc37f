"""Bad params, bad training data and bad prediction input fail with messages naming the field."""
from __future__ import annotations

import numpy as np
import pytest

from utils.engine.backend import cpu_backend
from utils.engine.models import (MODEL_REGISTRY, InvalidInputData, InvalidModelConfig, InvalidModelParams,
                                 InvalidTrainingData, ModelConfig, RandomForestPredictor, predict_columns,
                                 prepare_features, train_model)

FEATURES = ("price", "rsi")


def _config(**overrides) -> ModelConfig:
    fields = dict(model_type="random_forest", feature_columns=FEATURES, target_column="target",
                  params={"n_estimators": 5, "n_jobs": 1})
    fields.update(overrides)
    return ModelConfig(**fields)


def _columns(n: int = 12) -> dict[str, list[float]]:
    return {"price": [10.0 + i for i in range(n)], "rsi": [float(50 + (i * 7) % 13) for i in range(n)],
            "target": [float(i % 2) for i in range(n)]}


@pytest.mark.parametrize("params, named", [
    ({"n_estimators": 0}, "n_estimators"),
    ({"n_estimators": 5001}, "n_estimators"),
    ({"n_estimators": "100"}, "n_estimators"),
    ({"n_estimators": True}, "n_estimators"),
    ({"max_depth": 0}, "max_depth"),
    ({"max_depth": 201}, "max_depth"),
    ({"min_samples_split": 1}, "min_samples_split"),
    ({"min_samples_leaf": 0}, "min_samples_leaf"),
    ({"max_features": "auto"}, "max_features"),
    ({"bootstrap": "yes"}, "bootstrap"),
    ({"n_jobs": 0}, "n_jobs"),
    ({"random_state": -1}, "random_state"),
    ({"criterion": "gini"}, "criterion"),
    ({"__class__": "os.system"}, "__class__"),
])
def test_bad_params_name_the_param_and_the_allowed_ones(params, named):
    with pytest.raises(InvalidModelParams) as raised:
        RandomForestPredictor(_config(params=params))
    assert repr(named) in str(raised.value) and "n_estimators, max_depth" in str(raised.value)


def test_good_params_are_normalised_with_defaults():
    predictor = RandomForestPredictor(_config(params={"n_estimators": 100.0, "max_depth": None,
                                                      "max_features": 0.5, "min_samples_leaf": 3}))
    assert predictor.params == {"n_estimators": 100, "n_jobs": -1, "random_state": 42, "max_depth": None,
                                "max_features": 0.5, "min_samples_leaf": 3}
    assert isinstance(predictor.params["n_estimators"], int)


@pytest.mark.parametrize("model_type", MODEL_REGISTRY.names())
def test_the_registry_checks_params_without_building_a_model(model_type):
    """What TrainModel validates at submission equals what the model trains with."""
    config = _config(model_type=model_type, params={})
    assert MODEL_REGISTRY.validated_params(config) == MODEL_REGISTRY.get(model_type)(config).params
    with pytest.raises(InvalidModelParams, match="'no_such_param'"):
        MODEL_REGISTRY.validated_params(_config(model_type=model_type, params={"no_such_param": 1}))


@pytest.mark.parametrize("overrides, named", [
    ({"task": "ranking"}, "task"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"feature_columns": ()}, "feature_columns"),
    ({"feature_columns": ("price", "price")}, "price"),
    ({"feature_columns": ("price", "target")}, "target"),
])
def test_bad_config_is_rejected(overrides, named):
    with pytest.raises(InvalidModelConfig, match=named):
        _config(**overrides)


def _without(name: str) -> dict:
    columns = _columns()
    del columns[name]
    return columns


@pytest.mark.parametrize("columns, named", [
    (_without("rsi"), "'rsi'"),
    (_without("target"), "'target'"),
    ({**_columns(), "rsi": [50.0] * 11}, "rsi=11"),
    ({name: [] for name in ("price", "rsi", "target")}, "no rows"),
    ({**_columns(), "price": ["10"] * 12}, "'price'"),
    ({**_columns(), "rsi": [50.0] * 11 + [None]}, "'rsi'"),
    ({**_columns(), "rsi": [50.0] * 11 + [float("nan")]}, "'rsi' (1 row(s), first at row 11)"),
    ({**_columns(), "target": [1.0] * 11 + [float("inf")]}, "'target'"),
    ({**_columns(), "price": np.ones((12, 2))}, "'price'"),
])
def test_bad_training_data_names_the_column(columns, named):
    with pytest.raises(InvalidTrainingData) as raised:
        train_model(_config(), columns, cpu_backend())
    assert named in str(raised.value)


def test_extra_training_columns_are_ignored_and_bool_targets_are_labels():
    columns = {**_columns(), "timestamp": ["2024-01-01"] * 12, "target": [bool(i % 2) for i in range(12)]}
    predictor, report = train_model(_config(), columns, cpu_backend())
    assert report.task == "classification" and predictor.metadata()["classes"] == [0.0, 1.0]


def test_prepare_features_orders_columns_like_the_model():
    metadata = {"feature_columns": ["price", "rsi"]}
    matrix = prepare_features(metadata, {"rsi": [50, 60], "price": [10.0, 11.0]})
    np.testing.assert_array_equal(matrix, [[10.0, 50.0], [11.0, 60.0]])
    assert matrix.dtype == np.float64


@pytest.mark.parametrize("columns, named", [
    ({"price": [1.0]}, "missing column(s): 'rsi'"),
    ({"price": [1.0], "rsi": [2.0], "volume": [3.0]}, "unexpected column(s): 'volume'"),
    ({"price": [1.0, 2.0], "rsi": [2.0]}, "price=2, rsi=1"),
    ({"price": [], "rsi": []}, "no rows"),
    ({"price": ["a"], "rsi": [2.0]}, "'price'"),
    ({"price": [1.0], "rsi": [float("-inf")]}, "'rsi'"),
    ([1.0, 2.0], "mapping"),
])
def test_bad_prediction_input_names_the_column(columns, named):
    with pytest.raises(InvalidInputData) as raised:
        prepare_features({"feature_columns": ["price", "rsi"]}, columns)
    assert named in str(raised.value)


def test_predict_columns_returns_labels_and_probabilities():
    predictor, _ = train_model(_config(), _columns(), cpu_backend())
    labels, probabilities = predict_columns(predictor, {"price": [12.0], "rsi": [55.0]})
    assert labels.shape == (1,) and labels[0] in (0.0, 1.0)
    assert probabilities.shape == (1, 2) and probabilities.sum() == pytest.approx(1.0)
