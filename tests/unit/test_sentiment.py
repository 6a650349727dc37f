"""Sentiment backends (lexicons, strict LLM parsing), the as-of ``sentiment`` column and its use in
rules, factor expressions and training columns."""
from __future__ import annotations

import numpy as np
import pytest

from utils.data.sentiment import BEFORE_FIRST, asof
from utils.engine.backtest.signal_rules import RuleError, parse_rule
from utils.engine.factors.expressions import evaluate_factor, parse_factor
from utils.engine.models.dataset import market_training_columns
from utils.sentiment import LLMError, analyze, detect_language, lexicon_score
from utils.sentiment.llm import LLMConfig, parse_scores, request_body

POSITIVE_EN = "The company reported excellent earnings and strong growth; investors are delighted."
NEGATIVE_EN = "Terrible losses: the stock crashed and furious investors fear bankruptcy."
POSITIVE_ZH = "市场前景很好，值得买入"
NEGATIVE_ZH = "业绩很差，亏损严重，令人失望"


def test_vader_scores_clear_english_sentences():
    positive, backend = lexicon_score(POSITIVE_EN, "en")
    negative, _ = lexicon_score(NEGATIVE_EN, "en")
    assert backend == "vader" and positive > 0.5 and negative < -0.5
    assert lexicon_score("   ", "en") == (0.0, "default")


def test_snownlp_scores_clear_chinese_sentences_mapped_to_plus_minus_one():
    positive, backend = lexicon_score(POSITIVE_ZH, "zh")
    negative, _ = lexicon_score(NEGATIVE_ZH, "zh")
    assert backend == "snownlp" and positive > 0.5 and negative < -0.5
    assert -1.0 <= negative < positive <= 1.0


def test_auto_language_is_zh_when_cjk_is_present():
    assert detect_language("平安银行 beats estimates") == "zh"
    assert detect_language("Ping An beats estimates") == "en"
    result = analyze([POSITIVE_EN, NEGATIVE_ZH, ""], "auto", None, deadline=30)
    assert result.backends == ["vader", "snownlp", "default"] and result.fallback_reason == ""
    assert result.scores[0] > 0.5 and result.scores[1] < -0.5 and result.scores[2] == 0.0


@pytest.mark.parametrize("content,expected", [
    ('{"scores": [0.5, -1, 0]}', [0.5, -1.0, 0.0]),
    ('```json\n{"scores": [0.5, -1, 0]}\n```', [0.5, -1.0, 0.0]),
    ("[1, 0.25, -0.75]", [1.0, 0.25, -0.75]),
])
def test_llm_scores_parse(content, expected):
    assert parse_scores(content, 3) == expected


@pytest.mark.parametrize("content,reason", [
    ("positive", "not JSON"),
    ("[1 - 2, 0, 0]", "not JSON"),  # never evaluated
    ('{"scores": [0.5, 0.1]}', "2 scores for 3 texts"),
    ('{"scores": [0.5, 0.1, 1.5]}', "not a number in [-1, 1]"),
    ('{"scores": [0.5, true, 0]}', "not a number in [-1, 1]"),
    ('{"scores": [0.5, "0.2", 0]}', "not a number in [-1, 1]"),
    ('{"score": 0.5}', 'no "scores" list'),
    ('{"scores": [NaN, 0, 0]}', "not a number in [-1, 1]"),
])
def test_llm_output_that_is_not_strictly_scores_is_malformed(content, reason):
    with pytest.raises(LLMError, match="malformed output") as error:
        parse_scores(content, 3)
    assert reason in str(error.value)


def test_llm_request_is_a_chat_completion_with_the_texts_as_json():
    import json
    config = LLMConfig("http://llm.local/v1/", "m1")
    assert config.endpoint == "http://llm.local/v1/chat/completions" and config.backend == "llm:m1"
    assert LLMConfig("http://x/v1/chat/completions", "m").endpoint == "http://x/v1/chat/completions"
    body = json.loads(request_body(config, ["好", "bad"]))
    assert body["model"] == "m1" and body["messages"][0]["role"] == "system"
    assert json.loads(body["messages"][1]["content"]) == {"texts": ["好", "bad"]}


def test_asof_takes_the_latest_score_at_or_before_each_bar_and_zero_before_the_first():
    score_times = np.array([10, 20, 30], dtype=np.int64)
    scores = np.array([0.5, -0.25, 0.75])
    bars = np.array([5, 10, 15, 20, 29, 31])
    assert asof(score_times, scores, bars).tolist() == [BEFORE_FIRST, 0.5, 0.5, -0.25, -0.25, 0.75]
    assert asof(np.empty(0, np.int64), np.empty(0), bars).tolist() == [0.0] * 6


def test_sentiment_is_a_field_of_rules_and_factor_expressions():
    close = np.array([1.0, 2, 3, 4, 5])
    sentiment = np.array([0.0, 0.0, 0.5, 0.5, -0.5])
    rule = parse_rule("sentiment > 0.2 and close > shift(close, 1)")
    assert rule.inputs() == {"close", "sentiment"}
    assert rule.evaluate({"close": close, "sentiment": sentiment}).tolist() == [False, False, True, True, False]
    assert parse_rule("sma(sentiment, 2) > 0").evaluate({"close": close, "sentiment": sentiment})[3]
    values = evaluate_factor(parse_factor("ts_mean(sentiment, 2) * close"), {"close": close, "sentiment": sentiment})
    assert np.isnan(values[0]) and values[1:].tolist() == [0.0, 0.75, 2.0, 0.0]
    with pytest.raises(ValueError, match="read sentiment"):
        rule.evaluate({"close": close})
    with pytest.raises(RuleError, match="did you mean 'sentiment'"):
        parse_rule("sentimnt > 0")


def test_sentiment_is_a_training_feature_from_the_bars_column():
    n = 40
    bars = {"time": np.arange(n, dtype=np.int64), "close": np.linspace(10, 14, n),
            "sentiment": np.where(np.arange(n) < 20, 0.0, 0.6)}
    columns = market_training_columns({"A": bars}, ["sentiment", "return_1"], "next_return")
    assert list(columns) == ["sentiment", "return_1", "target"] and len(columns["sentiment"]) == n - 2
    assert columns["sentiment"][:19] == [0.0] * 19 and columns["sentiment"][-1] == 0.6
    from utils.engine.models.errors import InvalidTrainingData
    with pytest.raises(InvalidTrainingData, match="sentiment column"):
        market_training_columns({"A": {k: v for k, v in bars.items() if k != "sentiment"}}, ["sentiment"],
                                "next_return")
