"""One call of AnalyzeSentiment without the transport: per text a language, a lexicon score, and
(when configured) the LLM's score, all under one deadline.

The LLM (when given) and the lexicon run side by side from the start in worker threads; the caller
waits at most ``deadline`` seconds for both. LLM scores that arrive in time and parse are the
answer (backend ``llm:<model>``). Otherwise every text takes its lexicon score (``vader`` or
``snownlp``) and ``fallback_reason`` says why ("llm timeout after 3.0 s", "llm error: HTTP 500",
"llm malformed output: ..."). A text with no lexicon score (blank, its package missing, or not
reached before the deadline) is a neutral 0 from ``default``, and the reason says so too.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from utils.sentiment import llm as llm_client
from utils.sentiment.lexicon import DEFAULT, detect_language, lexicon_score

LANGUAGES = ("en", "zh", "auto")
LEXICON_MAX_CHARS = 2000  # SnowNLP segments ~8k chars/s: the lead of a long text is what it reads
LEXICON_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lexicon-sentiment")


@dataclass(frozen=True)
class SentimentResult:
    scores: list[float]
    backends: list[str]
    fallback_reason: str


def _lexicon(texts: list[str], languages: list[str], until: float, stop: threading.Event,
             scored: list, problems: list[str]) -> None:
    """Fill ``scored`` in order with (score, backend) until done, ``until`` or ``stop``."""
    for text, language in zip(texts, languages):
        if stop.is_set() or time.monotonic() >= until:
            return
        try:
            scored.append(lexicon_score(text[:LEXICON_MAX_CHARS], language))
        except ImportError as exc:
            problems.append(f"{language} lexicon unavailable ({exc.name or exc})")
            scored.append((0.0, DEFAULT))
        except Exception as exc:  # a lexicon failing on one odd text must not fail the request
            problems.append(f"{language} lexicon failed: {type(exc).__name__}")
            scored.append((0.0, DEFAULT))


def analyze(texts: list[str], language: str, llm: llm_client.LLMConfig | None, deadline: float
            ) -> SentimentResult:
    """Scores of ``texts`` ("en", "zh" or "auto": per text, CJK present -> zh), answered within
    ``deadline`` seconds (plus at most one text's lexicon work past it)."""
    started = time.monotonic()
    until = started + deadline
    languages = [detect_language(text) if language == "auto" else language for text in texts]
    llm_future = llm_client.POOL.submit(llm_client.score_texts, llm, texts) if llm is not None else None
    scored: list[tuple[float, str]] = []
    problems: list[str] = []
    stop = threading.Event()
    lexicon_future = LEXICON_POOL.submit(_lexicon, texts, languages, until, stop, scored, problems)
    pending = {future for future in (llm_future, lexicon_future) if future is not None}
    reason = ""
    while pending:
        done, pending = wait(pending, timeout=max(0.0, until - time.monotonic()), return_when=FIRST_COMPLETED)
        if not done:
            break
        if llm_future in done:
            try:
                scores = llm_future.result()
            except llm_client.LLMError as exc:
                reason = f"llm {exc}"
            except TimeoutError:
                reason = f"llm timeout after {llm.timeout:g} s"
            except Exception as exc:  # anything else from the HTTP stack is an error, not a crash
                reason = f"llm error: {type(exc).__name__}"
            else:
                stop.set()
                return SentimentResult(scores, [llm.backend] * len(texts), "")
    if llm_future is not None and not reason:
        llm_future.cancel()  # not started yet (the pool is busy): drop it
        reason = f"llm timeout after {min(llm.timeout, deadline):g} s"
    stop.set()
    scored = list(scored)
    if len(scored) < len(texts):
        problems.append(f"lexicon scored {len(scored)} of {len(texts)} texts within {deadline:g} s")
        scored += [(0.0, DEFAULT)] * (len(texts) - len(scored))
    reason = "; ".join(dict.fromkeys([reason] * bool(reason) + problems))
    return SentimentResult([score for score, _ in scored], [backend for _, backend in scored], reason)
