"""Lexicon sentiment: VADER (English) and SnowNLP (Chinese), both offline (their lexicon/model
files are inside the installed packages), each loaded once per process on first use.

VADER's ``compound`` is already in -1..1. SnowNLP's ``sentiments`` is P(positive) in 0..1, mapped
to 2p - 1. SnowNLP was trained on product reviews and misreads some market vocabulary (it scores
"股价暴跌" as positive); the LLM backend is the remedy where that matters.
"""
from __future__ import annotations

import re
import threading
from typing import Callable

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
DEFAULT = "default"  # the backend name of a neutral 0 when no lexicon applies
_models: dict[str, Callable[[str], float]] = {}
_lock = threading.Lock()


def detect_language(text: str) -> str:
    """"zh" when the text holds a CJK ideograph, else "en"."""
    return "zh" if CJK.search(text) else "en"


def _vader() -> Callable[[str], float]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    analyzer = SentimentIntensityAnalyzer()
    return lambda text: float(analyzer.polarity_scores(text)["compound"])


def _snownlp() -> Callable[[str], float]:
    from snownlp import SnowNLP
    return lambda text: 2.0 * float(SnowNLP(text).sentiments) - 1.0


BACKENDS = {"en": ("vader", _vader), "zh": ("snownlp", _snownlp)}


def _model(language: str) -> Callable[[str], float]:
    with _lock:  # SnowNLP takes ~2 s to load; concurrent first calls wait for one load
        if language not in _models:
            _models[language] = BACKENDS[language][1]()
        return _models[language]


def lexicon_score(text: str, language: str) -> tuple[float, str]:
    """``(score in [-1, 1], backend)`` of ``text`` in ``language`` ("en" or "zh"); a blank text is
    ``(0.0, "default")``. Raises ImportError when the language's package is not installed."""
    if not text.strip():
        return 0.0, DEFAULT
    score = _model(language)(text)
    return min(1.0, max(-1.0, score)), BACKENDS[language][0]
