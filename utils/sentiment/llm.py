"""Sentiment from an LLM behind an OpenAI-compatible chat-completions API (``POST .../chat/completions``).

One request per call: the texts go as a JSON list, the model is asked for ``{"scores": [...]}``
with one number in [-1, 1] per text, in order. The answer is parsed strictly (JSON only, never
eval'd): the right count of finite numbers in range, else ``LLMError("malformed output: ...")``.
The caller bounds the call with a deadline (``score_texts`` runs in a worker thread of ``POOL``;
the socket timeout is the same, so an abandoned call ends on its own).
"""
from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

MAX_TEXT_CHARS = 2000  # of each text sent to the LLM: the lead carries the tone, and prompts stay small
POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="llm-sentiment")
SYSTEM_PROMPT = ("You rate the sentiment of financial news and posts for trading. For each text give one "
                 "number from -1 (very negative for the asset) through 0 (neutral) to 1 (very positive). "
                 'Reply with JSON only, exactly {"scores": [<number>, ...]}, one number per text, in the '
                 "order given, and nothing else.")


class LLMError(Exception):
    """The LLM gave no usable scores; ``str()`` is the reason shown to the client."""


@dataclass(frozen=True)
class LLMConfig:
    url: str
    model: str
    api_key: str = ""
    timeout: float = 3.0

    @property
    def endpoint(self) -> str:
        """``LLM_API_URL`` as given when it names the endpoint, else the base URL + /chat/completions."""
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"

    @property
    def backend(self) -> str:
        return f"llm:{self.model}"


def request_body(config: LLMConfig, texts: list[str]) -> bytes:
    user = json.dumps({"texts": [text[:MAX_TEXT_CHARS] for text in texts]}, ensure_ascii=False)
    return json.dumps({"model": config.model, "temperature": 0,
                       "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                                    {"role": "user", "content": user}]}).encode("utf-8")


def _content(body: bytes) -> str:
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LLMError("malformed output: not a chat-completions response") from None
    if not isinstance(content, str):
        raise LLMError("malformed output: message content is not text")
    return content


def parse_scores(content: str, count: int) -> list[float]:
    """``count`` scores from the model's reply: ``{"scores": [...]}`` or a bare list, optionally in
    a ```json fence; each a finite number in [-1, 1]."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
        text = text[4:] if text.lower().startswith("json") else text
    try:
        parsed = json.loads(text)
    except ValueError:
        raise LLMError(f"malformed output: not JSON: {content[:80]!r}") from None
    scores = parsed.get("scores") if isinstance(parsed, dict) else parsed
    if not isinstance(scores, list):
        raise LLMError('malformed output: no "scores" list')
    if len(scores) != count:
        raise LLMError(f"malformed output: {len(scores)} scores for {count} texts")
    for score in scores:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score) \
                or not -1.0 <= score <= 1.0:
            raise LLMError(f"malformed output: score {score!r} is not a number in [-1, 1]")
    return [float(score) for score in scores]


def score_texts(config: LLMConfig, texts: list[str]) -> list[float]:
    """One score per text from the LLM; raises LLMError (or TimeoutError from the socket)."""
    headers = {"Content-Type": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    request = urllib.request.Request(config.endpoint, data=request_body(config, texts), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=config.timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise LLMError(f"error: HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise TimeoutError() from None
        raise LLMError(f"error: {exc.reason}") from None
    except (ConnectionError, OSError) as exc:
        if isinstance(exc, TimeoutError):
            raise
        raise LLMError(f"error: {exc}") from None
    return parse_scores(_content(body), len(texts))
