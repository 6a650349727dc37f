"""Sequence models (lstm, gru, transformer, dlinear): windows, learning, determinism, storage,
early stopping, parameter errors, the time-ordered split and the one-prediction-per-row rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.engine.backend import BackendUnavailable, cpu_backend
from utils.engine.models import (MODEL_REGISTRY, DetailedProgress, InvalidInputData, InvalidModelParams,
                                 ModelConfig, ModelStore, ProgressInfo, predict_columns, train_model)
from utils.engine.models.sequence.windows import (Standardiser, WindowedRows, split_windows, window_count,
                                                  window_targets)

ARCHITECTURES = ("lstm", "gru", "transformer", "dlinear")
WINDOW = 8
LAG = 3
# Small, fast networks: each fit is well under a second or two on 2 CPU cores.
FAST = {
    "lstm": {"hidden_size": 16, "learning_rate": 0.03},
    "gru": {"hidden_size": 16, "learning_rate": 0.03},
    "transformer": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "learning_rate": 0.005},
    "dlinear": {"learning_rate": 0.02},
}


def _config(model_type: str, n_features: int = 3, **params) -> ModelConfig:
    return ModelConfig(model_type=model_type, feature_columns=tuple(f"f{i}" for i in range(n_features)),
                       target_column="target",
                       params={"window": WINDOW, "epochs": 12, "batch_size": 64, **FAST[model_type], **params})


def _predictor(model_type: str, **params):
    return MODEL_REGISTRY.get(model_type)(_config(model_type, **params))


def _lagged_sign(n_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """target[t] = 1 if f0[t - LAG] > 0: only a model that looks back LAG rows can beat chance."""
    features = np.random.default_rng(seed).standard_normal((n_rows, 3))
    target = np.zeros(n_rows)
    target[LAG:] = (features[:-LAG, 0] > 0).astype(float)
    return features, target


def _columns(features: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    return {**{f"f{i}": features[:, i] for i in range(features.shape[1])}, "target": target}


# -- windows ---------------------------------------------------------------------------------
def test_windows_hand_example():
    rows = np.array([[0, 10], [1, 11], [2, 12], [3, 13], [4, 14]], dtype=float)
    windows = WindowedRows(rows, window=3)
    assert len(windows) == window_count(5, 3) == 3
    batch = windows.batch(torch.tensor([0, 2])).numpy()
    assert batch.shape == (2, 3, 2)  # (samples, window, features), time ascending
    np.testing.assert_array_equal(batch[0], [[0, 10], [1, 11], [2, 12]])
    np.testing.assert_array_equal(batch[1], [[2, 12], [3, 13], [4, 14]])
    # each window is labelled with the target of its last row
    np.testing.assert_array_equal(window_targets(np.array([5, 6, 7, 8, 9]), 3), [7, 8, 9])
    assert window_count(2, 3) == 0


def test_window_split_is_the_tail_and_scaler_uses_training_rows_only():
    train, validation = split_windows(100, 0.2)
    assert train.tolist() == list(range(80)) and validation.tolist() == list(range(80, 100))
    features, target = _lagged_sign(300)
    features[250:] += 100.0  # a regime the training rows never saw
    predictor = _predictor("dlinear", epochs=1, patience=1)
    predictor.fit(features, target)
    n_windows = window_count(300, WINDOW)
    n_train_windows = n_windows - int(n_windows * 0.2)
    covered = n_train_windows + WINDOW - 1  # rows 0..covered-1 appear in some training window
    assert predictor.summary["train_windows"] == n_train_windows
    np.testing.assert_allclose(predictor.feature_scaler.mean, features[:covered].mean(axis=0))
    stats = Standardiser.from_dict(predictor.feature_scaler.to_dict())
    np.testing.assert_array_equal(stats.scale, predictor.feature_scaler.scale)


def test_validation_rows_never_train_the_network():
    """Only the order of training windows is shuffled: validation rows (and their targets) give the
    validation loss but never a gradient step or a scaler statistic."""
    features, target = _lagged_sign(400)
    rng = np.random.default_rng(5)
    other_features, other_target = rng.standard_normal((100, 3)), rng.integers(0, 2, 100).astype(float)
    fits = []
    for validation in ((features[300:], target[300:]), (other_features, other_target)):
        predictor = _predictor("gru", epochs=3, patience=None)
        predictor.fit(features[:300], target[:300], validation=validation)
        assert predictor.summary["validation_windows"] == 100
        assert predictor.summary["best_validation_loss"] is not None
        fits.append(predictor.predict_proba(features[:300]))
    np.testing.assert_array_equal(fits[0], fits[1])


# -- learning --------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_learns_a_lagged_sign_on_held_out_windows(model_type):
    features, target = _lagged_sign(1100)
    predictor = _predictor(model_type, epochs=12, patience=3)
    result = predictor.fit(features[:800], target[:800])
    assert result.task == "classification" and result.device == "cpu"
    # held-out rows 800.. predicted with the WINDOW - 1 rows before them as history
    history = WINDOW - 1
    predicted = predictor.predict(features[800 - history:])[history:]
    accuracy = float(np.mean(predicted == target[800:]))
    assert accuracy > 0.75, f"{model_type}: held-out accuracy {accuracy:.3f} (chance is 0.5)"


@pytest.mark.parametrize("model_type", ["gru", "dlinear"])
def test_regression_continues_a_sine(model_type):
    steps = np.arange(1400)
    wave = np.sin(steps * 2 * np.pi / 25) + 0.05 * np.random.default_rng(1).standard_normal(1400)
    features = np.column_stack([wave, np.cos(steps * 0.01)])
    target = np.roll(wave, -1)  # the next value of the wave
    config = _config(model_type, n_features=2, epochs=15, patience=5)
    predictor = MODEL_REGISTRY.get(model_type)(config)
    assert predictor.fit(features[:700], target[:700]).task == "regression"
    history = WINDOW - 1
    predicted = predictor.predict(features[700 - history:1399])[history:]
    truth = target[700:1399]  # the last row's target wrapped around: not scored
    r2 = 1 - np.sum((truth - predicted) ** 2) / np.sum((truth - truth.mean()) ** 2)
    assert r2 > 0.8, f"{model_type}: held-out r2 {r2:.3f}"


# -- determinism, storage, the prediction convention ------------------------------------------
@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_same_seed_same_predictions_and_store_round_trip(model_type, tmp_path):
    features, target = _lagged_sign(260)
    first, second = _predictor(model_type, epochs=2), _predictor(model_type, epochs=2)
    first.fit(features, target)
    second.fit(features, target)
    np.testing.assert_array_equal(first.predict_proba(features), second.predict_proba(features))

    store = ModelStore(tmp_path)
    store.save("seq-1", first)
    assert sorted(path.name for path in (tmp_path / "seq-1").iterdir()) == ["metadata.json", "model.pt",
                                                                           "sequence.json"]
    loaded = store.load("seq-1")
    assert type(loaded) is type(first) and loaded.history_rows == WINDOW - 1
    np.testing.assert_array_equal(loaded.predict(features), first.predict(features))
    np.testing.assert_array_equal(loaded.predict_proba(features), first.predict_proba(features))
    metadata = store.read_metadata("seq-1")
    assert metadata["format"] == "torch_state_dict" and metadata["versions"]["torch"] == torch.__version__
    assert metadata["window"] == WINDOW and metadata["classes"] == [0.0, 1.0]


def test_a_different_seed_gives_a_different_network():
    features, target = _lagged_sign(200)
    config = _config("lstm", epochs=1)
    first = MODEL_REGISTRY.get("lstm")(config)
    second = MODEL_REGISTRY.get("lstm")(ModelConfig(**{**config.__dict__, "random_state": 7}))
    first.fit(features, target)
    second.fit(features, target)
    assert not np.array_equal(first.predict_proba(features), second.predict_proba(features), equal_nan=True)


def test_one_prediction_per_row_with_history_rows_nan():
    features, target = _lagged_sign(200)
    predictor = _predictor("dlinear", epochs=1)
    predictor.fit(features, target)
    predicted, probabilities = predictor.predict(features[:WINDOW + 2]), predictor.predict_proba(features[:WINDOW + 2])
    assert predicted.shape == (WINDOW + 2,) and probabilities.shape == (WINDOW + 2, 2)
    assert np.isnan(predicted[:WINDOW - 1]).all() and np.isin(predicted[WINDOW - 1:], [0.0, 1.0]).all()
    assert np.isnan(probabilities[:WINDOW - 1]).all()
    np.testing.assert_allclose(probabilities[WINDOW - 1:].sum(axis=1), 1.0)
    # the last row's prediction depends only on the last WINDOW rows
    assert predictor.predict(features[-WINDOW:])[-1] == predictor.predict(features)[-1]
    columns = _columns(features[:WINDOW - 1], target[:WINDOW - 1])
    del columns["target"]
    with pytest.raises(InvalidInputData, match=f"at least {WINDOW} time-ordered rows"):
        predict_columns(predictor, columns)


# -- training loop ---------------------------------------------------------------------------
def test_early_stopping_on_noise_restores_the_best_epoch():
    rng = np.random.default_rng(3)
    features, target = rng.standard_normal((400, 3)), rng.standard_normal(400)
    predictor = _predictor("lstm", epochs=60, patience=2, hidden_size=32, learning_rate=0.02)
    predictor.fit(features, target)
    summary = predictor.summary
    assert summary["stopped_early"] and summary["epochs_run"] < 60
    assert summary["best_epoch"] == summary["epochs_run"] - 2
    assert predictor.final_fit_params() == {"epochs": summary["best_epoch"], "patience": None}


def test_train_model_scores_every_validation_row_and_reports_validation_loss():
    features, target = _lagged_sign(500)
    reports: list[tuple[float, ProgressInfo | None]] = []
    predictor, report = train_model(_config("dlinear", epochs=5), _columns(features, target), cpu_backend(),
                                    progress=DetailedProgress(lambda f, info: reports.append((f, info))))
    assert report.metrics_scope == "validation" and report.n_validation == 100 and report.device == "cpu"
    assert report.metrics["accuracy"] > 0.6
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    split_fit_info = [info for _, info in reports if info is not None and info.validation_loss is not None]
    assert split_fit_info and split_fit_info[0].loss_name == "cross_entropy" and split_fit_info[0].total == 5
    # the refit on all rows ran the epoch count early stopping chose, holding nothing out
    assert predictor.summary["validation_windows"] == 0 and predictor.summary["train_windows"] == 500 - WINDOW + 1


def test_gpu_request_on_a_cpu_backend_is_an_error():
    features, target = _lagged_sign(100)
    gpu_config = ModelConfig(**{**_config("gru", epochs=1).__dict__, "device": "gpu"})
    with pytest.raises(BackendUnavailable, match="device 'gpu' requested for gru"):
        MODEL_REGISTRY.get("gru")(gpu_config, cpu_backend()).fit(features, target)


@pytest.mark.parametrize("model_type, params, named", [
    ("lstm", {"window": 1}, "window"),
    ("gru", {"hidden_size": 0}, "hidden_size"),
    ("lstm", {"dropout": 1.0}, "dropout"),
    ("transformer", {"epochs": 0}, "epochs"),
    ("transformer", {"hidden_size": 10, "num_heads": 4}, "num_heads"),
    ("dlinear", {"hidden_size": 8}, "hidden_size"),
    ("dlinear", {"kernel_size": 9, "window": 5}, "kernel_size"),
    ("dlinear", {"kernel_size": 4}, "kernel_size"),
    ("lstm", {"patience": -1}, "patience"),
    ("gru", {"learning_rate": 0}, "learning_rate"),
    ("lstm", {"batch_size": 2.5}, "batch_size"),
])
def test_bad_params_are_named(model_type, params, named):
    with pytest.raises(InvalidModelParams, match=named):
        MODEL_REGISTRY.get(model_type)(_config(model_type, **params))


def test_too_few_rows_for_a_window():
    with pytest.raises(ValueError, match=f"window={WINDOW} needs at least {WINDOW + 1} rows"):
        _predictor("lstm").fit(*_lagged_sign(WINDOW - 1))
