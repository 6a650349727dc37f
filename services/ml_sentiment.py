"""MLService.AnalyzeSentiment (mixed into ``services.ml_service.MLServicer``): validate, score in
the serving process (``utils.sentiment``, no queue: it answers within a deadline), and with
symbol + time store the mean score as the symbol's ``sentiment`` at that time."""
from __future__ import annotations

import time

from api_proto import ml_pb2
from services import validation
from services.errors import invalid
from utils.data import sentiment as stored_sentiment
from utils.sentiment import LANGUAGES, LLMConfig, analyze

MAX_TEXTS = 256
MAX_TEXT_CHARS = 10_000


def llm_config(settings) -> LLMConfig | None:
    """The configured LLM, or None when LLM_API_URL or LLM_MODEL is unset."""
    if not (settings.llm_api_url and settings.llm_model):
        return None
    return LLMConfig(settings.llm_api_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout_seconds)


class SentimentRPC:
    """Needs ``self.settings`` and ``self.queue`` (its Redis client), MLServicer's."""

    def AnalyzeSentiment(self, request, context):
        started = time.perf_counter()
        texts = list(request.texts)
        if not 1 <= len(texts) <= MAX_TEXTS:
            raise invalid("texts", f"give 1 to {MAX_TEXTS} texts, got {len(texts)}")
        for index, text in enumerate(texts):
            if len(text) > MAX_TEXT_CHARS:
                raise invalid(f"texts[{index}]", f"is {len(text)} characters long; at most {MAX_TEXT_CHARS}")
        language = request.language or "auto"
        if language not in LANGUAGES:
            raise invalid("language", f"{request.language!r} is not one of {', '.join(LANGUAGES)}")
        if bool(request.symbol) != bool(request.time):
            missing = "time" if request.symbol else "symbol"
            raise invalid(missing, "symbol and time go together: give both to store the scores, or neither")
        time_ns = None
        if request.symbol:
            validation.symbol("symbol", request.symbol)
            time_ns = validation.time_ns("time", request.time)
        llm = llm_config(self.settings)
        deadline = llm.timeout if llm is not None else self.settings.sentiment_timeout_seconds
        result = analyze(texts, language, llm, deadline)
        if time_ns is not None:
            stored_sentiment.store_score(self.queue.redis, request.symbol, time_ns,
                                         sum(result.scores) / len(result.scores))
        return ml_pb2.SentimentResponse(scores=result.scores, backends=result.backends,
                                        fallback_reason=result.fallback_reason, stored=time_ns is not None,
                                        elapsed=time.perf_counter() - started)
