"""Fuzz every RPC of every service with random and malformed requests (hypothesis).

The RPCs come from the proto descriptors, so a new RPC is fuzzed without touching this file.
Requests are built from each message descriptor (unicode, huge and JSON-ish strings; NaN, inf
and extreme numbers; repeated, map and nested fields), mutated from a few valid requests so the
checks past the first field are reached too, or are raw random bytes. Every answer must be a
deliberate status - never UNKNOWN or INTERNAL, never a traceback - and the server must keep
serving valid requests afterwards.
"""
from __future__ import annotations

import json
import os
import pkgutil
import importlib
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, given, settings, strategies as st

import api_proto
from api_proto import backtest_pb2, backtest_pb2_grpc, jobs_pb2, jobs_pb2_grpc, ml_pb2, ml_pb2_grpc
from tests.conftest import wait_until

ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
           grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
           grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.CANCELLED,
           grpc.StatusCode.UNIMPLEMENTED}  # grpc's own Health.List, deliberately unimplemented
UNARY_EXAMPLES, STREAM_EXAMPLES, RAW_EXAMPLES = 150, 25, 40
# The same examples on every run (CI stays reproducible); FUZZ_RANDOM=1 explores new ones.
DERANDOMIZE = os.environ.get("FUZZ_RANDOM") != "1"
UNARY_TIMEOUT, STREAM_TIMEOUT = 10.0, 0.3  # open-ended streams end by deadline
MAX_STREAM_RESPONSES = 50


def _file_descriptors() -> list:
    modules = [importlib.import_module(f"api_proto.{info.name}") for info in pkgutil.iter_modules(api_proto.__path__)
               if info.name.endswith("_pb2")]
    return [module.DESCRIPTOR for module in modules] + [health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR]


def _methods() -> list[MethodDescriptor]:
    return [method for file in _file_descriptors() for service in file.services_by_name.values()
            for method in service.methods]


METHODS = _methods()
METHOD_IDS = [f"{m.containing_service.name}.{m.name}" for m in METHODS]

# --------------------------------------------------------------------- values
SYMBOLS = ["000001.SZ", "600000.SH", "000002.SZ", "NOPE.XX", "a" * 33, "../etc", "0001\x00.SZ", "股票.SZ"]
TIMES = ["2024-01-01", "2024-12-31", "2015-01-05T09:30:00Z", "2031-02-30", "1970-01-01T00:00:00+25:00",
         "9999-12-31T23:59:59.999999999Z", "0000-00-00", "-1", "2024-01-01T00:00:00.123456789123Z", "NaN"]
WORDS = ["trend_following", "sma_crossover", "mean_reversion", "breakout", "momentum", "signals",
         "random_forest", "gradient_boosting", "linear", "logistic", "lstm", "mlp", "rsi", "sma_20", "macd_5_35_5",
         "bollinger", "stoch_14_3_3", "vwap_0", "sma_-1", "sma_99999999999", "auto", "cpu", "gpu", "1m", "1d",
         "bt-nope", "tr-nope", "close", "target", "next_return_sign", "next_return_5", "high", "low"]
JSON_KEYS = ["strategy_type", "lookback_period", "moving_average_window", "param_grid", "walk_forward", "fast",
             "slow", "window", "fill", "direction", "sizing", "size", "stop_loss", "take_profit", "entry", "exit",
             "rank_by", "train_bars", "test_bars", "n_estimators", "max_depth", "learning_rate", "epochs",
             "hidden_size", "x", "y", "f0", "f1", "price", "volume", "target", "close", ""]
GUIDE_CONFIG = json.dumps({"strategy_type": "trend_following", "lookback_period": 20, "moving_average_window": 50})
NUMBERS = st.one_of(st.integers(-10**12, 10**12), st.floats(), st.sampled_from([0, 1, -1, 2**63, 10**400, 1e308]))


def _json_text() -> st.SearchStrategy[str]:
    leaves = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20), st.sampled_from(WORDS))
    values = st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.sampled_from(JSON_KEYS) | st.text(max_size=8), inner,
                                                     max_size=6)), max_leaves=25)
    columns = st.dictionaries(st.sampled_from(JSON_KEYS), st.lists(NUMBERS | leaves, max_size=30), max_size=5)
    extras = st.dictionaries(st.sampled_from(JSON_KEYS), values, max_size=3)
    documents = st.one_of(values, columns, st.builds(lambda word, extra: {"strategy_type": word, **extra},
                                                     st.sampled_from(WORDS), extras),
                          st.builds(lambda extra: {**json.loads(GUIDE_CONFIG), **extra}, extras),
                          st.builds(lambda f0, y: {"f0": f0, "y": y}, values, values),  # the seeds' columns
                          st.builds(lambda f0: {"f0": f0}, st.lists(NUMBERS | values, max_size=30)))
    garbage = st.sampled_from(["{", "}", "[]", "null", "NaN", '{"a": NaN}', '{"a": Infinity}', "{'a': 1}",
                               '{"a": 1,}', "\ufeff{}", '{"a":' * 200, "1e999999", '"' * 3])
    return st.one_of(documents.map(lambda v: json.dumps(v, allow_nan=True)), garbage)


def _text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40), st.sampled_from(SYMBOLS + TIMES + WORDS + [""]), _json_text(),
        st.builds(lambda piece, times: piece * times, st.text(min_size=1, max_size=4), st.integers(1000, 300_000)),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=20))


TEXT, JSON_TEXT = _text(), _json_text()
INT_RANGES = {FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
              FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
              FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
              FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
              FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1)}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return st.one_of(JSON_TEXT, TEXT) if any(w in field.name for w in ("config", "params", "data")) else TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        width = 64 if kind == FieldDescriptor.TYPE_DOUBLE else 32
        return st.one_of(st.floats(width=width), st.sampled_from([0.0, -0.0, 1e6, 0.0003, -1.0, float("nan")]))
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values] + [-1, 99])
    low, high = INT_RANGES[kind]
    return st.one_of(st.integers(low, high), st.sampled_from([v for v in (0, 1, -1, 20, 600, low, high)
                                                            if low <= v <= high]))


def _repeated(element: st.SearchStrategy, small: st.SearchStrategy) -> st.SearchStrategy[list]:
    many = st.builds(lambda value, count: [value] * count, small, st.integers(0, 2000))  # over the limits
    return st.one_of(st.lists(element, max_size=8), many)


@st.composite
def messages(draw, descriptor: Descriptor, depth: int = 0, only: frozenset[str] | None = None) -> Any:
    """A message with random fields set (or exactly the fields in ``only``)."""
    message = GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if not (field.name in only if only is not None else draw(st.booleans())):
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            entry = field.message_type
            if entry.GetOptions().map_entry:
                key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
                target = getattr(message, field.name)
                for key in draw(st.lists(_scalar(key_field), max_size=4)):
                    if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                        target[key].CopyFrom(draw(messages(value_field.message_type, depth + 1)))
                    else:
                        target[key] = draw(_scalar(value_field))
            elif field.is_repeated:
                getattr(message, field.name).extend(draw(st.lists(messages(entry, depth + 1), max_size=4)))
            else:
                getattr(message, field.name).CopyFrom(draw(messages(entry, depth + 1)))
        elif field.is_repeated:
            small = st.sampled_from(SYMBOLS + WORDS) if field.type == FieldDescriptor.TYPE_STRING else _scalar(field)
            getattr(message, field.name).extend(draw(_repeated(_scalar(field), small)))
        else:
            setattr(message, field.name, draw(_scalar(field)))
    return message


# Valid requests to mutate, so the checks after the first few fields are reached too.
SEEDS: dict[str, dict[str, Any]] = {
    "BacktestRequest": dict(stock_codes=["000001.SZ", "600000.SH"], start_time="2024-01-01", end_time="2024-12-31",
                            strategy_config=GUIDE_CONFIG, initial_capital=1e6, commission_rate=0.0003),
    "FeatureRequest": dict(stock_code="000001.SZ", feature_types=["rsi", "sma_20"], lookback=50, return_series=True),
    "TrainModelRequest": dict(model_type="linear", feature_columns=["f0"], target_column="y",
                              training_data=json.dumps({"f0": [1.0, 2.0, 3.0, 4.0], "y": [1.0, 2.0, 3.0, 5.0]})),
    "GetBarsRequest": dict(symbol="000001.SZ", start_time="2024-01-01", limit=5),
    "ImportBarsRequest": dict(symbol="FUZZ.X", bars=[dict(time="2024-01-02", open=1, high=2, low=0.5, close=1.5,
                                                           volume=10)]),
    "StreamDataRequest": dict(stock_code="FUZZ.T", price=10.0, volume=5, timestamp="2024-01-02T09:30:00Z"),
    "SubscriptionRequest": dict(stock_codes=["000001.SZ"]),
    "FactorAnalysisRequest": dict(symbols=["000001.SZ", "600000.SH"], start_time="2024-01-01", end_time="2024-03-31",
                                  expression="cs_rank(ts_mean(close, 5) / close)", periods=[1, 5]),
    "FactorSetRequest": dict(symbols=["000001.SZ", "600000.SH", "000002.SZ"], start_time="2024-01-01",
                             end_time="2024-03-31", expressions=["close / ts_mean(close, 5)", "cs_rank(volume)"]),
    "EvaluateFactorsRequest": dict(symbols=["000001.SZ", "600000.SH", "000002.SZ"], start_time="2024-01-01",
                                   end_time="2024-03-31", expressions=["close / ts_mean(close, 5)"], periods=[1]),
}


def live_seeds(channel: grpc.Channel, descriptor: Descriptor) -> dict[str, Any]:
    """A seed naming a real completed backtest, training task or model, for requests that carry
    such an id (so Predict, results and reports are fuzzed past the id look-up)."""
    fields = set(descriptor.fields_by_name)
    if "backtest_id" in fields:
        stub = backtest_pb2_grpc.BacktestServiceStub(channel)
        backtest_id = stub.IntegratedBacktest(backtest_pb2.BacktestRequest(**SEEDS["BacktestRequest"])).backtest_id
        wait_until(lambda: stub.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
            backtest_id=backtest_id)).status == backtest_pb2.COMPLETED, timeout=60)
        return {"backtest_id": backtest_id}
    if "factor_set_id" in fields and "expressions" not in fields:  # CombineFactors: a stored factor set
        from api_proto import factor_pb2, factor_pb2_grpc
        set_id = factor_pb2_grpc.FactorServiceStub(channel).ComputeFactors(
            factor_pb2.FactorSetRequest(**SEEDS["FactorSetRequest"])).job_id
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        wait_until(lambda: jobs.GetJob(jobs_pb2.JobRequest(job_id=set_id)).status == jobs_pb2.COMPLETED, timeout=60)
        return {"factor_set_id": set_id, "window": 20}
    if fields & {"task_id", "model_id"}:
        stub = ml_pb2_grpc.MLServiceStub(channel)
        task_id = stub.TrainModel(ml_pb2.TrainModelRequest(**SEEDS["TrainModelRequest"])).task_id
        status = wait_until(lambda: (s := stub.GetTrainingStatus(ml_pb2.TrainingStatusRequest(task_id=task_id)))
                            .status == "completed" and s, timeout=60)
        seed = {"task_id": task_id, "model_id": status.model_id, "input_data": json.dumps({"f0": [1.0, 2.5]})}
        return {name: value for name, value in seed.items() if name in fields}
    return {}


def requests_for(descriptor: Descriptor, live: dict[str, Any]) -> st.SearchStrategy:
    random = messages(descriptor)
    seed = {**SEEDS.get(descriptor.name, {}), **live} or None
    if seed is None:
        return random

    @st.composite
    def mutated(draw) -> Any:
        """The valid request with one or two of its fields replaced by random values."""
        names = draw(st.permutations([f.name for f in descriptor.fields]))[:draw(st.integers(1, 2))]
        message = GetMessageClass(descriptor)(**seed)
        for name in names:
            message.ClearField(name)
        message.MergeFrom(draw(messages(descriptor, only=frozenset(names))))
        return message
    return st.one_of(random, mutated(), mutated(), st.just(GetMessageClass(descriptor)(**seed)))


# ------------------------------------------------------------------------ calls
@dataclass
class Answer:
    code: grpc.StatusCode
    details: str


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def call(channel: grpc.Channel, method: MethodDescriptor, payloads: list[bytes]) -> Answer:
    """Send raw payloads (one for unary requests) and drain the answer."""
    path, parse = _path(method), GetMessageClass(method.output_type).FromString
    try:
        if not method.client_streaming and not method.server_streaming:
            channel.unary_unary(path, None, parse)(payloads[0], timeout=UNARY_TIMEOUT)
            return Answer(grpc.StatusCode.OK, "")
        if not method.server_streaming:
            channel.stream_unary(path, None, parse)(iter(payloads), timeout=UNARY_TIMEOUT)
            return Answer(grpc.StatusCode.OK, "")
        if method.client_streaming:
            responses = channel.stream_stream(path, None, parse)(iter(payloads), timeout=STREAM_TIMEOUT * 5)
        else:
            responses = channel.unary_stream(path, None, parse)(payloads[0], timeout=STREAM_TIMEOUT)
        for count, _ in enumerate(responses):
            if count >= MAX_STREAM_RESPONSES:
                responses.cancel()
                break
        return Answer(grpc.StatusCode.OK, "")
    except grpc.RpcError as error:
        return Answer(error.code(), error.details() or "")


def check(method: MethodDescriptor, answer: Answer, request: Any) -> None:
    shown = repr(request)[:300]
    assert answer.code in ALLOWED, f"{_path(method)} answered {answer.code.name}: {answer.details!r} to {shown}"
    assert "Traceback" not in answer.details and 'File "' not in answer.details, (_path(method), answer.details)
    assert "metadata size exceeds" not in answer.details, (_path(method), answer.details)  # our message was lost


def fuzz_messages(channel: grpc.Channel, method: MethodDescriptor) -> None:
    streaming = method.client_streaming or method.server_streaming
    single = requests_for(method.input_type, live_seeds(channel, method.input_type))
    drawn = st.lists(single, min_size=0 if method.client_streaming else 1,
                     max_size=5 if method.client_streaming else 1)

    @settings(max_examples=STREAM_EXAMPLES if streaming else UNARY_EXAMPLES, deadline=None, database=None,
              derandomize=DERANDOMIZE, suppress_health_check=list(HealthCheck))
    @given(drawn)
    def run(requests: list) -> None:
        check(method, call(channel, method, [r.SerializeToString() for r in requests]), requests)
    run()


def fuzz_bytes(channel: grpc.Channel, method: MethodDescriptor) -> None:
    garbage = st.one_of(st.binary(max_size=300), st.sampled_from([b"\xff" * 16, b"\x0a\xff\xff\xff\xff\x0f",
                                                                   b"\x12\x05\xc3\x28abc", b"\x08" * 11]))

    @settings(max_examples=RAW_EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(garbage, min_size=1, max_size=3 if method.client_streaming else 1))
    def run(payloads: list[bytes]) -> None:
        check(method, call(channel, method, payloads), payloads)
    run()


def test_every_service_is_fuzzed():
    assert {m.containing_service.full_name for m in METHODS} >= {
        "gpu_api.backtest.BacktestService", "gpu_api.realtime.RealTimeService", "gpu_api.ml.MLService",
        "gpu_api.market_data.MarketDataService", "gpu_api.jobs.JobService", "gpu_api.factor.FactorService",
        "grpc.health.v1.Health"}
    assert len(METHODS) >= 30


@pytest.mark.parametrize("method", METHODS, ids=METHOD_IDS)
def test_random_and_malformed_requests_get_a_proper_status(platform, channel, method):
    fuzz_messages(channel, method)
    fuzz_bytes(channel, method)
    # Still healthy, and a valid request of the guide still completes (ahead of fuzzed jobs).
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    if method.containing_service.name == "BacktestService":
        stub = backtest_pb2_grpc.BacktestServiceStub(channel)
        submitted = stub.IntegratedBacktest(backtest_pb2.BacktestRequest(**SEEDS["BacktestRequest"], priority=3))
        wait_until(lambda: stub.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
            backtest_id=submitted.backtest_id)).status == backtest_pb2.COMPLETED, timeout=60)


# ------------------------------------------------- what the fuzzing found, pinned
def _code(call) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


def test_crashes_found_by_fuzzing_stay_fixed(platform, channel):
    from api_proto import market_data_pb2, market_data_pb2_grpc, realtime_pb2, realtime_pb2_grpc
    backtests = backtest_pb2_grpc.BacktestServiceStub(channel)
    history = backtest_pb2.BacktestHistoryRequest
    for request in (history(page_token="1" * 5000), history(page_token="²"), history(status=-1)):
        code, details = _code(lambda: backtests.GetBacktestHistory(request))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (request, details)
    # An error echoing a huge value used to overflow the client's trailer limit (RESOURCE_EXHAUSTED).
    code, details = _code(lambda: backtests.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
        backtest_id="Ö" * 100_000)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(details) < 5000
    code, details = _code(lambda: backtests.IntegratedBacktest(backtest_pb2.BacktestRequest(
        stock_codes=["000001.SZ"], start_time="2024-01-01", end_time="€" * 50_000)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("end_time:") and "(truncated)" in details
    # Unparsable bytes used to be gRPC's own INTERNAL "Exception deserializing request!".
    raw = channel.unary_unary("/gpu_api.backtest.BacktestService/GetBacktestStatus")
    code, details = _code(lambda: raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "gpu_api.backtest.BacktestStatusRequest" in details
    # grpc's HealthServicer leaves List unimplemented: UNIMPLEMENTED, not INTERNAL.
    code, _ = _code(lambda: channel.unary_unary("/grpc.health.v1.Health/List")(b"", timeout=5))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    # Dates beyond int64 nanoseconds (year 1 or 9999) used to overflow (INTERNAL) or wrap silently.
    bars = market_data_pb2_grpc.MarketDataServiceStub(channel)
    code, details = _code(lambda: bars.ImportBars(market_data_pb2.ImportBarsRequest(
        symbol="OLD.X", bars=[market_data_pb2.Bar(time="0001-01-01", open=1, high=1, low=1, close=1)])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "supported range" in details
    ticks = [realtime_pb2.Tick(stock_code="OLD.T", price=1.0, volume=1.0, timestamp=stamp)
             for stamp in ("0001-01-01000:00:00.0", "9999-12-31", "2262-04-12", "2024-01-02")]
    responses = list(realtime_pb2_grpc.RealTimeServiceStub(channel).StreamMarketData(
        iter([realtime_pb2.StreamDataRequest(ticks=ticks)]), timeout=10))
    assert [bool(r.error) for r in responses] == [True, True, True, False]
    # A nested or ragged input column used to reach numpy unchecked (INTERNAL).
    seed = live_seeds(channel, ml_pb2.PredictRequest.DESCRIPTOR)
    code, details = _code(lambda: ml_pb2_grpc.MLServiceStub(channel).Predict(ml_pb2.PredictRequest(
        model_id=seed["model_id"], input_data='{"f0": [0, []]}')))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("input_data:")
