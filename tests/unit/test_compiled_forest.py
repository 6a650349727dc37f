"""The compiled forest kernel against scikit-learn (the reference): labels identical,
probabilities and regression values within the stated tolerance, and the fallback without a compiler."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from utils.engine.models import ModelConfig, RandomForestPredictor
from utils.engine.models.compiled_forest import CompileUnavailable, CompiledForest, load_kernel
from utils.serving.onnx_forest import FastForest

REGRESSION_RTOL = 1e-12  # float64 sums in tree order vs scikit-learn's (thread order)
PROBABILITY_ATOL = 1e-12


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    return load_kernel(tmp_path_factory.mktemp("kernels"))


def _queries(forest, rows: int, seed: int) -> np.ndarray:
    """Random rows plus rows sitting exactly on (and one float32 step around) split thresholds,
    where a float32/float64 slip would send a row the other way."""
    rng = np.random.default_rng(seed)
    queries = np.round(rng.normal(size=(rows, forest.n_features_in_)), 1)
    tree = forest.estimators_[0].tree_
    inner = np.flatnonzero(tree.children_left != -1)[:rows]
    for index, node in enumerate(inner):
        threshold = np.float32(tree.threshold[node])
        queries[index, tree.feature[node]] = [threshold, np.nextafter(threshold, np.float32(np.inf)),
                                              np.nextafter(threshold, np.float32(-np.inf))][index % 3]
    return queries


@pytest.mark.parametrize("max_depth", [None, 6])  # pure leaves (votes) / mixed leaves
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("rows", [1, 64, 5000])  # 5000: split over threads
def test_classifier_matches_scikit_learn(kernel, max_depth, n_classes, rows):
    x, y = make_classification(n_samples=3000, n_features=5, n_informative=3, n_redundant=0, flip_y=0.3,
                               n_classes=n_classes, random_state=3)
    forest = RandomForestClassifier(n_estimators=60, max_depth=max_depth, random_state=0, n_jobs=1)
    forest.fit(np.round(x, 1), y)
    queries = _queries(forest, rows, rows)
    mean = CompiledForest(forest, kernel).mean(queries)
    reference = forest.predict_proba(queries)
    np.testing.assert_allclose(mean, reference, rtol=0, atol=PROBABILITY_ATOL)
    if max_depth is None:
        assert np.array_equal(mean, reference)  # vote counts / n_trees: exact


@pytest.mark.parametrize("rows", [1, 64, 5000])
def test_regressor_matches_scikit_learn(kernel, rows):
    x, y = make_regression(n_samples=3000, n_features=6, noise=5.0, random_state=4)
    forest = RandomForestRegressor(n_estimators=50, random_state=0, n_jobs=2).fit(np.round(x, 1), y)
    queries = _queries(forest, rows, rows)
    np.testing.assert_allclose(CompiledForest(forest, kernel).mean(queries)[:, 0], forest.predict(queries),
                               rtol=REGRESSION_RTOL, atol=1e-9)


@pytest.mark.parametrize("max_depth", [None, 4])
def test_served_labels_equal_scikit_learn(kernel, max_depth):
    # Coarse features and noisy labels: many exact and near ties between the two classes.
    x, y = make_classification(n_samples=3000, n_features=4, n_informative=2, n_redundant=0, flip_y=0.3,
                               random_state=9)
    config = ModelConfig("random_forest", ("a", "b", "c", "d"), "target",
                         params={"n_estimators": 100, "n_jobs": 1, "max_depth": max_depth})
    predictor = RandomForestPredictor(config)
    predictor.fit(np.round(x, 1), y)
    fast = FastForest(predictor, kernel=kernel)
    assert fast.runtime == "compiled" and fast.session is None
    queries = np.round(np.random.default_rng(0).normal(size=(5000, 4)), 1)
    labels, probabilities = fast.predict(queries)
    assert labels.tolist() == predictor.predict(queries).tolist()
    np.testing.assert_allclose(probabilities, predictor.predict_proba(queries), rtol=0, atol=PROBABILITY_ATOL)


def test_kernel_is_built_once_into_its_directory(tmp_path):
    first = load_kernel(tmp_path / "k")
    built = list((tmp_path / "k").glob("forest_kernel-*.so"))
    assert len(built) == 1 and load_kernel(tmp_path / "k") is first
    assert not [p for p in (tmp_path / "k").iterdir() if p not in built]  # no partial files left


def test_without_a_compiler_the_forest_is_served_as_before(tmp_path):
    with pytest.raises(CompileUnavailable, match="no C compiler"):
        load_kernel(tmp_path / "k", compiler=str(tmp_path / "no-such-cc"))
    x, y = make_classification(n_samples=500, n_features=4, random_state=1)
    config = ModelConfig("random_forest", ("a", "b", "c", "d"), "target", params={"n_estimators": 10})
    predictor = RandomForestPredictor(config)
    predictor.fit(x, y)
    fast = FastForest(predictor, kernel=None)
    assert fast.runtime == "onnxruntime"
    labels, _ = fast.predict(x[:50])
    assert labels.tolist() == predictor.predict(x[:50]).tolist()


def test_a_multi_output_forest_is_not_compiled(kernel):
    x, y = make_regression(n_samples=200, n_features=3, n_targets=2, random_state=0)
    forest = RandomForestRegressor(n_estimators=5, random_state=0).fit(x, y)
    with pytest.raises(CompileUnavailable, match="multi-output"):
        CompiledForest(forest, kernel)


@pytest.mark.parametrize("compiler,runtime", [("cc", "compiled"), ("/nonexistent/cc", "onnxruntime")])
def test_serving_factory_compiles_forests_or_falls_back(tmp_path, compiler, runtime, caplog):
    from prometheus_client import CollectorRegistry

    from config.settings import load_settings
    from utils.engine.backend import resolve_backend
    from utils.monitoring import Metrics
    from utils.serving import onnx_forest
    from utils.serving.serving_model import ServingFactory
    settings = load_settings(data_dir=tmp_path, compute_device="cpu", redis_embedded="never")
    factory = ServingFactory(settings, Metrics(CollectorRegistry()), resolve_backend("cpu", 0),
                             forest_compiler=compiler)
    x, y = make_classification(n_samples=500, n_features=4, random_state=1)
    predictor = RandomForestPredictor(ModelConfig("random_forest", ("a", "b", "c", "d"), "target",
                                                  params={"n_estimators": 10}))
    predictor.fit(x, y)
    built = []
    original = onnx_forest.FastForest.__init__

    def spy(self, *args, **kwargs):  # records which engine the factory's fast path chose
        original(self, *args, **kwargs)
        built.append(self.runtime)
    onnx_forest.FastForest.__init__ = spy
    try:
        model = factory(predictor, "m1")
    finally:
        onnx_forest.FastForest.__init__ = original
    assert built == [runtime] and model.runtime == ("compiled" if runtime == "compiled" else "native")
    (labels, _), device = model.predict(x[:20])
    assert device == "cpu" and labels.tolist() == predictor.predict(x[:20]).tolist()
    if runtime != "compiled":
        assert "without the compiled kernel" in caplog.text
    assert (tmp_path / "compiled-kernels").exists() == (runtime == "compiled")
