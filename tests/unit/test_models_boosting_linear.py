"""LightGBM gradient boosting and the standardised linear models: metrics, storage, early stopping,
progress, params, reproducibility, coefficients."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk_metrics
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.reference_metrics import binary_reference
from utils.engine.backend import BackendUnavailable, cpu_backend
from utils.engine.models import (MODEL_REGISTRY, DetailedProgress, GradientBoostingPredictor, InvalidModelConfig,
                                 InvalidModelParams, InvalidTrainingData, ModelConfig, ModelStore, evaluate,
                                 train_model)

FAST = {"n_estimators": 40, "n_jobs": 1}


def _columns(features: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    columns = {f"f{index}": features[:, index] for index in range(features.shape[1])}
    columns["target"] = target
    return columns


def _config(model_type: str, n_features: int, **overrides) -> ModelConfig:
    fields = dict(model_type=model_type, feature_columns=tuple(f"f{i}" for i in range(n_features)),
                  target_column="target", params=dict(FAST) if model_type == "gradient_boosting" else {})
    fields.update(overrides)
    return ModelConfig(**fields)


def _fitted(model_type: str, features, target, validation=None, **config_fields):
    predictor = MODEL_REGISTRY.get(model_type)(_config(model_type, features.shape[1], **config_fields))
    if validation is None:
        predictor.fit(features, target)
    else:
        predictor.fit(features, target, validation=validation)
    return predictor


def _regression_data(n=600, seed=0):
    return make_regression(n_samples=n, n_features=6, n_informative=4, noise=10.0, random_state=seed)


def _binary_data(n=600):
    return make_classification(n_samples=n, n_features=6, n_informative=4, n_clusters_per_class=1, random_state=0)


def _multiclass_data(n=900):
    features, codes = make_classification(n_samples=n, n_features=6, n_informative=4, n_classes=3,
                                          n_clusters_per_class=1, random_state=1)
    return features, np.array([5.0, 7.0, 9.0])[codes]  # labels that are not 0..k-1


# -- metrics on held-out rows -------------------------------------------------------------------
@pytest.mark.parametrize("model_type", ["gradient_boosting", "linear", "ridge"])
def test_regression_metrics_match_sklearn(model_type):
    features, target = _regression_data()
    predictor = _fitted(model_type, features[:450], target[:450])
    predicted = predictor.predict(features[450:])
    truth = target[450:]
    scores = evaluate("regression", truth, predicted)
    assert scores["rmse"] == pytest.approx(np.sqrt(sk_metrics.mean_squared_error(truth, predicted)), rel=1e-12)
    assert scores["mae"] == pytest.approx(sk_metrics.mean_absolute_error(truth, predicted), rel=1e-12)
    assert scores["r2"] == pytest.approx(sk_metrics.r2_score(truth, predicted), rel=1e-12)
    assert scores["r2"] > 0.7
    assert predictor.predict_proba(features[450:]) is None


@pytest.mark.parametrize("model_type", ["gradient_boosting", "logistic"])
def test_binary_metrics_match_sklearn(model_type):
    features, target = _binary_data()
    predictor = _fitted(model_type, features[:450], target[:450])
    held_out, truth = features[450:], target[450:]
    predicted, proba = predictor.predict(held_out), predictor.predict_proba(held_out)
    assert proba.shape == (150, 2) and np.allclose(proba.sum(axis=1), 1.0)
    scores = evaluate("classification", truth, predicted, proba, classes=predictor.classes)
    expected = binary_reference(truth, predicted, proba)
    assert scores.keys() == expected.keys()
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-12), name
    assert scores["accuracy"] > 0.75


@pytest.mark.parametrize("model_type", ["gradient_boosting", "logistic"])
def test_multiclass_predicts_original_labels_and_metrics_match_sklearn(model_type):
    features, target = _multiclass_data()
    predictor = _fitted(model_type, features[:700], target[:700])
    held_out, truth = features[700:], target[700:]
    predicted, proba = predictor.predict(held_out), predictor.predict_proba(held_out)
    assert predictor.metadata()["classes"] == [5.0, 7.0, 9.0]
    assert proba.shape == (200, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(predicted, predictor.classes[np.argmax(proba, axis=1)])
    scores = evaluate("classification", truth, predicted, proba, classes=predictor.classes)
    assert scores["f1"] == pytest.approx(sk_metrics.f1_score(truth, predicted, average="weighted"), abs=1e-12)
    assert scores["log_loss"] == pytest.approx(sk_metrics.log_loss(truth, proba, labels=[5.0, 7.0, 9.0]), abs=1e-12)
    assert scores["roc_auc"] == pytest.approx(
        sk_metrics.roc_auc_score(truth, proba, multi_class="ovr", average="weighted"), abs=1e-12)
    assert scores["accuracy"] > 0.7


# -- end to end: trainer, store, identical predictions after load --------------------------------
@pytest.mark.parametrize("model_type,data", [
    ("gradient_boosting", _regression_data), ("gradient_boosting", _binary_data),
    ("gradient_boosting", _multiclass_data), ("linear", _regression_data), ("ridge", _regression_data),
    ("logistic", _binary_data), ("logistic", _multiclass_data)])
def test_train_save_load_round_trip_gives_identical_predictions(tmp_path, model_type, data):
    features, target = data()
    predictor, report = train_model(_config(model_type, 6), _columns(features, target), cpu_backend())
    assert report.metrics_scope == "validation" and report.device == "cpu"
    assert sum(report.feature_importance.values()) == pytest.approx(1.0)
    store = ModelStore(tmp_path)
    store.save("m1", predictor, report)
    loaded = store.load("m1")
    assert type(loaded) is type(predictor)
    assert np.array_equal(loaded.predict(features), predictor.predict(features))
    proba = predictor.predict_proba(features)
    assert (proba is None) == (loaded.predict_proba(features) is None)
    if proba is not None:
        assert np.array_equal(loaded.predict_proba(features), proba)
    assert loaded.feature_importance() == pytest.approx(predictor.feature_importance())
    assert store.read_metadata("m1")["metrics"] == report.metrics


def test_lightgbm_model_is_saved_as_text(tmp_path):
    features, target = _regression_data()
    _fitted("gradient_boosting", features, target).save(tmp_path)
    assert (tmp_path / "model.txt").read_text().startswith("tree\n")


# -- early stopping and progress -----------------------------------------------------------------
def test_early_stopping_stops_early_on_a_noisy_target_and_the_refit_keeps_that_round_count():
    rng = np.random.default_rng(3)
    features, target = rng.normal(size=(1000, 6)), rng.normal(size=1000)  # nothing to learn
    params = {"n_estimators": 500, "early_stopping_rounds": 10, "n_jobs": 1}
    predictor = _fitted("gradient_boosting", features[:800], target[:800],
                        validation=(features[800:], target[800:]), params=params)
    assert predictor.best_iteration is not None and predictor.best_iteration < 100
    assert predictor.metadata()["n_trees"] == predictor.best_iteration
    assert predictor.validation_loss is not None
    assert predictor.final_fit_params() == {"n_estimators": predictor.best_iteration, "early_stopping_rounds": None}

    final, report = train_model(_config("gradient_boosting", 6, params=params), _columns(features, target),
                                cpu_backend())
    assert final.params["n_estimators"] == final.metadata()["n_trees"] < 100
    assert final.params["early_stopping_rounds"] is None and report.n_final_fit == 1000


def test_without_validation_rows_all_rounds_are_trained():
    rng = np.random.default_rng(3)
    features, target = rng.normal(size=(300, 3)), rng.normal(size=300)
    predictor = _fitted("gradient_boosting", features, target,
                        params={"n_estimators": 30, "early_stopping_rounds": 5, "n_jobs": 1})
    assert predictor.best_iteration is None and predictor.metadata()["n_trees"] == 30


def test_detailed_progress_is_monotone_reaches_one_and_carries_validation_loss():
    features, target = _regression_data()
    seen = []
    predictor = GradientBoostingPredictor(_config("gradient_boosting", 6))
    predictor.fit(features[:450], target[:450], DetailedProgress(lambda fraction, info: seen.append((fraction, info))),
                  validation=(features[450:], target[450:]))
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) == FAST["n_estimators"] + 1
    assert [info.done for _, info in seen[:-1]] == list(range(1, FAST["n_estimators"] + 1))
    assert all(info.loss_name == "l2" and info.unit == "trees" and info.validation_loss > 0 for _, info in seen)
    assert seen[-1][1].validation_loss == predictor.validation_loss


def test_progress_through_train_model_is_monotone_for_plain_and_detailed_callbacks():
    features, target = _binary_data()
    plain, detailed = [], []
    train_model(_config("gradient_boosting", 6), _columns(features, target), cpu_backend(), progress=plain.append)
    train_model(_config("gradient_boosting", 6), _columns(features, target), cpu_backend(),
                progress=DetailedProgress(lambda fraction, info: detailed.append((fraction, info))))
    assert all(isinstance(fraction, float) for fraction in plain)
    assert plain == sorted(plain) and plain[-1] == pytest.approx(1.0)
    assert [fraction for fraction, _ in detailed] == plain
    # the split fit reports validation loss; the refit on all rows has no validation rows
    assert detailed[0][1].validation_loss is not None and detailed[-1][1].validation_loss is None


def test_progress_callback_can_abort_boosting():
    features, target = _regression_data()

    def cancel(fraction):
        if fraction > 0.2:
            raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        GradientBoostingPredictor(_config("gradient_boosting", 6)).fit(features, target, cancel)


# -- params, tasks, devices ------------------------------------------------------------------
@pytest.mark.parametrize("model_type,params,named", [
    ("gradient_boosting", {"n_trees": 10}, "n_trees"),
    ("gradient_boosting", {"learning_rate": 0}, "learning_rate"),
    ("gradient_boosting", {"num_leaves": 1}, "num_leaves"),
    ("gradient_boosting", {"subsample": 1.5}, "subsample"),
    ("gradient_boosting", {"n_estimators": "many"}, "n_estimators"),
    ("gradient_boosting", {"early_stopping_rounds": 0}, "early_stopping_rounds"),
    ("gradient_boosting", {"max_depth": True}, "max_depth"),
    ("linear", {"alpha": 1.0}, "alpha"),
    ("ridge", {"alpha": -1.0}, "alpha"),
    ("logistic", {"C": 0}, "C"),
    ("logistic", {"max_iter": 2.5}, "max_iter"),
])
def test_bad_params_raise_naming_the_param(model_type, params, named):
    with pytest.raises(InvalidModelParams, match=repr(named)):
        MODEL_REGISTRY.get(model_type)(_config(model_type, 3, params=params))


def test_params_accept_json_doubles_and_fill_defaults():
    predictor = GradientBoostingPredictor(_config("gradient_boosting", 3, params={"n_estimators": 50.0,
                                                                                 "max_depth": None}))
    assert predictor.params["n_estimators"] == 50 and isinstance(predictor.params["n_estimators"], int)
    assert predictor.params["num_leaves"] == 31 and predictor.params["random_state"] == 42


def test_fixed_random_state_reproduces_a_bagged_model():
    features, target = _regression_data()
    params = {**FAST, "subsample": 0.7, "colsample_bytree": 0.6}
    first = _fitted("gradient_boosting", features, target, params=params, random_state=7).predict(features)
    again = _fitted("gradient_boosting", features, target, params=params, random_state=7).predict(features)
    other = _fitted("gradient_boosting", features, target, params=params, random_state=8).predict(features)
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_regression_only_models_resolve_auto_to_regression_and_refuse_classification():
    features = np.random.default_rng(0).normal(size=(50, 2))
    integer_target = np.arange(50) % 3  # would be inferred as classes
    predictor, report = train_model(_config("linear", 2), _columns(features, integer_target), cpu_backend())
    assert report.task == "regression" and predictor.predict_proba(features) is None
    with pytest.raises(InvalidModelConfig, match="classification"):
        train_model(_config("ridge", 2, task="classification"), _columns(features, integer_target), cpu_backend())
    with pytest.raises(InvalidTrainingData, match="two classes"):
        _fitted("logistic", features, np.ones(50))


def test_explicit_gpu_without_a_gpu_backend_fails_loudly_and_auto_runs_on_cpu():
    features, target = _regression_data(n=100)
    with pytest.raises(BackendUnavailable, match="gradient_boosting"):
        GradientBoostingPredictor(_config("gradient_boosting", 6, device="gpu"), cpu_backend()).fit(features, target)
    result = GradientBoostingPredictor(_config("gradient_boosting", 6), cpu_backend()).fit(features, target)
    assert result.device == "cpu"


def test_validation_rows_with_labels_unseen_in_training_are_left_out():
    features, target = _binary_data()
    validation_target = target[450:].astype(np.float64)
    validation_target[:5] = 4.0  # a class the training rows never had
    predictor = _fitted("gradient_boosting", features[:450], target[:450],
                        validation=(features[450:], validation_target))
    assert predictor.validation_loss is not None and predictor.metadata()["classes"] == [0.0, 1.0]


# -- linear coefficients ---------------------------------------------------------------------------
def test_linear_coefficients_equal_sklearn_ols_on_raw_features():
    features, target = _regression_data()
    features = features * np.array([1.0, 10.0, 0.1, 5.0, 1.0, 100.0])  # scales differ
    predictor = _fitted("linear", features, target)
    reference = LinearRegression().fit(features, target)
    coefficients, intercepts = predictor.raw_coefficients()
    np.testing.assert_allclose(coefficients[0], reference.coef_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(intercepts[0], reference.intercept_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(predictor.predict(features), reference.predict(features), rtol=1e-9, atol=1e-7)
    standardised = np.abs(predictor.pipeline.named_steps["model"].coef_)
    assert list(predictor.feature_importance().values()) == pytest.approx(list(standardised / standardised.sum()))


@pytest.mark.parametrize("model_type,reference,params", [
    ("ridge", Ridge(alpha=3.0), {"alpha": 3.0}),
    ("logistic", LogisticRegression(C=0.5, max_iter=1000), {"C": 0.5}),
])
def test_penalised_models_equal_a_sklearn_standardised_pipeline(model_type, reference, params):
    features, target = _binary_data() if model_type == "logistic" else _regression_data()
    predictor = _fitted(model_type, features, target, params=params)
    expected = make_pipeline(StandardScaler(), reference).fit(features, target)
    np.testing.assert_allclose(predictor.pipeline.named_steps["model"].coef_, expected[-1].coef_, rtol=1e-9)
    np.testing.assert_allclose(predictor.predict(features), expected.predict(features), rtol=1e-9)
    if model_type == "logistic":
        np.testing.assert_allclose(predictor.predict_proba(features), expected.predict_proba(features), rtol=1e-9)
