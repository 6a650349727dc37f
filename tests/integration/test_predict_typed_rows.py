"""Predict with typed rows (PredictRequest.rows + feature_names) over real gRPC + Redis: the
same answers as the JSON input, any column order, and actionable INVALID_ARGUMENT on bad shapes."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from api_proto import ml_pb2, ml_pb2_grpc
from tests.integration.test_api_ml import FEATURES, classification_columns, train
from utils.engine.models import ModelStore


@pytest.fixture
def stub(channel):
    return ml_pb2_grpc.MLServiceStub(channel)


@pytest.fixture
def model(platform, stub):
    columns = classification_columns(n=300, seed=11)
    model_id = train(stub, training_data=json.dumps(columns), feature_columns=FEATURES)
    return model_id, columns, ModelStore(platform.settings.models_path).load(model_id)


def typed(model_id, matrix, names):
    return ml_pb2.PredictRequest(model_id=model_id, feature_names=names,
                                 rows=[ml_pb2.FeatureRow(values=row) for row in matrix])


@pytest.mark.parametrize("rows", [1, 7])
def test_typed_rows_answer_like_json_columns(stub, model, rows):
    model_id, columns, direct = model
    matrix = np.column_stack([columns[name][:rows] for name in FEATURES])
    as_json = stub.Predict(ml_pb2.PredictRequest(model_id=model_id, input_data=json.dumps(
        {name: columns[name][:rows] for name in FEATURES})))
    shuffled = [FEATURES[i] for i in (2, 0, 3, 1)]  # any column order
    as_rows = stub.Predict(typed(model_id, matrix[:, [2, 0, 3, 1]].tolist(), shuffled))
    assert list(as_rows.predictions) == list(as_json.predictions) == direct.predict(matrix).tolist()
    assert as_rows.runtime == as_json.runtime == "compiled"  # the forest kernel (cc is present here)
    assert [list(p.values) for p in as_rows.probabilities] == [list(p.values) for p in as_json.probabilities]
    np.testing.assert_allclose([p.values for p in as_rows.probabilities], direct.predict_proba(matrix), atol=1e-12)


@pytest.mark.parametrize("names,matrix,field,needle", [
    (FEATURES, [[0.1, 0.2, 0.3]], "rows[0].values", "has 3 value(s); each row needs 4"),
    (FEATURES, [[0.1, 0.2, 0.3, 0.4], [0.1, 0.2]], "rows[1].values", "has 2 value(s); each row needs 4"),
    (FEATURES[:3], [[0.1, 0.2, 0.3]], "feature_names", "missing: 'f3'"),
    ([*FEATURES, "volume"], [[0.1, 0.2, 0.3, 0.4, 5.0]], "feature_names", "unexpected: 'volume'"),
    (["f0", "f0", "f1", "f2"], [[0.1, 0.2, 0.3, 0.4]], "feature_names", "repeated: 'f0'"),
    ([], [[0.1, 0.2, 0.3, 0.4]], "feature_names", "name the columns"),
    (FEATURES, [], "rows", "give at least one row"),
    (FEATURES, [[0.1, float("nan"), 0.3, 0.4]], "rows[0].values[1]", "values must be finite (column 'f1')"),
])
def test_bad_typed_rows_are_invalid_with_the_fix(stub, model, names, matrix, field, needle):
    model_id = model[0]
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(typed(model_id, matrix, names))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(field + ":") and needle in error.value.details(), error.value.details()


def test_json_and_rows_together_are_invalid(stub, model):
    model_id, columns, _ = model
    request = typed(model_id, [[0.1, 0.2, 0.3, 0.4]], FEATURES)
    request.input_data = json.dumps({name: columns[name][:1] for name in FEATURES})
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not both" in error.value.details()


def test_too_many_rows_name_the_limit(platform, stub, model):
    limit = platform.settings.max_rows_per_request
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(typed(model[0], [[0.1, 0.2, 0.3, 0.4]] * (limit + 1), FEATURES))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("rows:") and "MAX_ROWS_PER_REQUEST" in error.value.details()
