"""MLService.AnalyzeSentiment over real gRPC + Redis + worker, with a real local HTTP server speaking
the OpenAI chat-completions format: correct answers, a hang past the timeout, HTTP 500 and
malformed output all answer within the timeout + 1 s with the right backend and fallback reason;
stored scores come back as the ``sentiment`` field of a rule and a training feature."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc, ml_pb2, ml_pb2_grpc
from tests.conftest import wait_until
from utils.data import keys

TIMEOUT = 1.0
MODEL = "test-llm"
POSITIVE_EN = "The company reported excellent earnings and strong growth; investors are delighted."
NEGATIVE_ZH = "业绩很差，亏损严重，令人失望"


class FakeLLM(BaseHTTPRequestHandler):
    """POST /v1/chat/completions; ``server.mode``: ok | hang | error | malformed."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, self.headers.get("Authorization"), body))
        mode = self.server.mode
        if mode == "hang":
            time.sleep(TIMEOUT + 2)
        if mode == "error":
            self.send_response(500)
            self.end_headers()
            return
        texts = json.loads(body["messages"][-1]["content"])["texts"]
        content = (json.dumps({"scores": [0.25] * len(texts)}) if mode in ("ok", "hang")
                   else "I think these are mostly positive")
        reply = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": content}}]}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (hang)
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def llm_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    server.daemon_threads = True
    server.mode, server.requests = "ok", []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(settings_factory, redis_client, llm_server):
    llm_server.mode, llm_server.requests[:] = "ok", []
    return settings_factory(llm_api_url=f"http://127.0.0.1:{llm_server.server_address[1]}/v1",
                            llm_model=MODEL, llm_api_key="secret", llm_timeout_seconds=TIMEOUT)


@pytest.fixture
def stub(channel):
    return ml_pb2_grpc.MLServiceStub(channel)


def analyze(stub, **fields):
    started = time.monotonic()
    response = stub.AnalyzeSentiment(ml_pb2.SentimentRequest(**fields), timeout=30)
    return response, time.monotonic() - started


def test_llm_answers_and_every_failure_falls_back_to_the_lexicon_in_time(stub, llm_server):
    from utils.sentiment import lexicon_score
    lexicon_score(NEGATIVE_ZH, "zh")  # SnowNLP's first load (~2 s) is not what the deadlines measure
    texts = [POSITIVE_EN, NEGATIVE_ZH]
    response, seconds = analyze(stub, texts=texts)
    assert list(response.scores) == [0.25, 0.25] and list(response.backends) == [f"llm:{MODEL}"] * 2
    assert response.fallback_reason == "" and not response.stored and 0 < response.elapsed < seconds
    path, authorization, body = llm_server.requests[-1]
    assert path == "/v1/chat/completions" and authorization == "Bearer secret" and body["model"] == MODEL

    for mode, reason in [("hang", f"llm timeout after {TIMEOUT:g} s"), ("error", "llm error: HTTP 500"),
                         ("malformed", "llm malformed output: not JSON")]:
        llm_server.mode = mode
        response, seconds = analyze(stub, texts=texts, language="auto")
        assert seconds < TIMEOUT + 1, (mode, seconds)
        assert list(response.backends) == ["vader", "snownlp"], mode
        assert response.scores[0] > 0.5 and response.scores[1] < -0.5, mode
        assert response.fallback_reason.startswith(reason), (mode, response.fallback_reason)


def test_bad_requests_name_the_field(stub):
    for fields, field in [({}, "texts"), ({"texts": ["x"] * 257}, "texts"),
                          ({"texts": ["ok", "x" * 10_001]}, "texts[1]"),
                          ({"texts": ["x"], "language": "fr"}, "language"),
                          ({"texts": ["x"], "symbol": "000001.SZ"}, "time"),
                          ({"texts": ["x"], "time": "2024-01-02"}, "symbol"),
                          ({"texts": ["x"], "symbol": "bad symbol!", "time": "2024-01-02"}, "symbol"),
                          ({"texts": ["x"], "symbol": "000001.SZ", "time": "yesterday"}, "time")]:
        with pytest.raises(grpc.RpcError) as error:
            stub.AnalyzeSentiment(ml_pb2.SentimentRequest(**fields))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert error.value.details().startswith(f"{field}:"), (fields, error.value.details())


def test_stored_sentiment_drives_a_rule_and_a_training_feature(stub, channel, llm_server, redis_client):
    llm_server.mode = "error"  # lexicon scores: a clearly positive day, then a clearly negative one
    good, _ = analyze(stub, texts=[POSITIVE_EN], language="en", symbol="000001.SZ", time="2024-03-01T09:00:00")
    bad, _ = analyze(stub, texts=[NEGATIVE_ZH, NEGATIVE_ZH], language="zh", symbol="000001.SZ", time="2024-06-03")
    assert good.stored and bad.stored and good.scores[0] > 0.5 and bad.scores[0] < -0.5
    assert len(redis_client.hgetall(keys.sentiment("000001.SZ"))) == 2

    backtests = backtest_pb2_grpc.BacktestServiceStub(channel)
    config = {"strategy_type": "signals", "entry": "sentiment > 0.3", "exit": "sentiment < -0.3"}
    submitted = backtests.IntegratedBacktest(backtest_pb2.BacktestRequest(
        stock_codes=["000001.SZ"], start_time="2024-01-01", end_time="2024-12-31",
        strategy_config=json.dumps(config), initial_capital=1_000_000, commission_rate=0.0003))
    status = wait_until(lambda: (s := backtests.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
        backtest_id=submitted.backtest_id))).status in (backtest_pb2.COMPLETED, backtest_pb2.FAILED) and s, timeout=60)
    assert status.status == backtest_pb2.COMPLETED, status.error_message
    trades = backtests.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=submitted.backtest_id)).trades
    # Daily bars are stamped 00:00: Friday 03-01 09:00's score is first seen on Monday 03-04's bar,
    # the 06-03 one on 06-03's; the engine fills a signal at the next bar.
    assert len(trades) == 1 and trades[0].entry_time[:10] == "2024-03-05"
    assert trades[0].exit_time[:10] == "2024-06-04"

    trained = stub.TrainModel(ml_pb2.TrainModelRequest(
        model_type="random_forest", model_params=json.dumps({"n_estimators": 5, "max_depth": 3, "n_jobs": 1}),
        market_data=ml_pb2.MarketDataSource(symbols=["000001.SZ"], start_time="2024-01-01", end_time="2024-12-31",
                                            features=["sentiment", "return_1"], target="next_return_sign")))
    training = wait_until(lambda: (s := stub.GetTrainingStatus(ml_pb2.TrainingStatusRequest(
        task_id=trained.task_id))).status in ("completed", "failed") and s, timeout=60)
    assert training.status == "completed", training.error
    metrics = stub.GetModelMetrics(ml_pb2.MetricsRequest(model_id=training.model_id))
    assert list(metrics.feature_columns) == ["sentiment", "return_1"]


def test_factor_panels_carry_fresh_sentiment(redis_server, redis_client):
    """The factor loaders add the ``sentiment`` panel (as of each date, NaN where a symbol has no
    bar) and never serve it from the aligned-bars cache, whose entries only know bar versions."""
    import numpy as np
    from utils.data import sentiment
    from utils.data.store import BarStore, Bars
    from utils.redis_client import make_redis
    from utils.tasks.factor import bar_columns, expression_factor
    from utils.tasks.factor_panels import AlignedBarsCache
    store = BarStore(make_redis("127.0.0.1", redis_server.port, decode=False))
    day = 86_400 * 10**9
    for symbol, first in [("AAA", 0), ("BBB", 2)]:
        times = np.arange(first, 6, dtype=np.int64) * day
        prices = np.linspace(10, 11, times.size)
        store.write(Bars(symbol, times, prices, prices, prices, prices, np.full(times.size, 100.0)), replace=True)
    sentiment.store_score(redis_client, "AAA", 2 * day + 1, 0.5)
    columns = bar_columns("close * (1 + sentiment)")
    assert columns == ("close", "sentiment")
    cache = AlignedBarsCache(1 << 20)
    aligned = cache.load(store, ["AAA", "BBB"], 0, 5 * day, 0, columns)
    assert aligned.panels["sentiment"][:, 0].tolist() == [0, 0, 0, 0.5, 0.5, 0.5]
    assert np.isnan(aligned.panels["sentiment"][:2, 1]).all() and aligned.panels["sentiment"][2:, 1].tolist() == [0] * 4
    sentiment.store_score(redis_client, "BBB", 4 * day, -1.0)
    again = cache.load(store, ["AAA", "BBB"], 0, 5 * day, 0, columns)
    assert again.panels["sentiment"][4:, 1].tolist() == [-1.0, -1.0]
    factor = expression_factor("close * (1 + sentiment)", again)
    assert factor[5, 0] == pytest.approx(11 * 1.5) and factor[5, 1] == 0.0
