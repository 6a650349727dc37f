"""Stored sentiment per symbol (AnalyzeSentiment with symbol + time) and the ``sentiment`` column
it becomes on bars.

Storage: one Redis hash per symbol (``keys.sentiment``), field = the time in ns, value = the mean
score of the texts stored for that time; storing the same time again replaces it.

The column (as-of join): each bar takes the latest score stored at or before the bar's time, so a
bar never sees a later text. A bar before the symbol's first score gets 0.0 (neutral, as the
``default`` backend), not NaN: NaN would drop those rows from training and make rules unknown, and
"no news" reads as neutral. Scores do not decay: a score holds until the next one.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from utils.data import keys

COLUMN = "sentiment"
BEFORE_FIRST = 0.0  # the column's value before a symbol's first stored score


def store_score(client: Any, symbol: str, time_ns: int, score: float) -> None:
    client.hset(keys.sentiment(symbol), str(int(time_ns)), repr(float(score)))


def read_scores(client: Any, symbol: str) -> tuple[np.ndarray, np.ndarray]:
    """(times int64 ns increasing, scores float64) stored for ``symbol``; empty when none."""
    return _parse(client.hgetall(keys.sentiment(symbol)))


def _parse(stored: dict) -> tuple[np.ndarray, np.ndarray]:
    pairs = sorted((int(time), float(score)) for time, score in stored.items())  # bytes or str both parse
    times = np.array([time for time, _ in pairs], dtype=np.int64)
    return times, np.array([score for _, score in pairs], dtype=np.float64)


def asof(score_times: np.ndarray, scores: np.ndarray, bar_times: Any) -> np.ndarray:
    """For each bar time, the latest score at or before it; ``BEFORE_FIRST`` before the first."""
    bar_times = np.asarray(bar_times, dtype=np.int64)
    index = np.searchsorted(score_times, bar_times, side="right") - 1
    values = np.full(bar_times.shape, BEFORE_FIRST)
    known = index >= 0
    values[known] = scores[index[known]]
    return values


def sentiment_column(client: Any, symbol: str, bar_times: Any) -> np.ndarray:
    """``symbol``'s stored sentiment on its bars (see the module's as-of rule)."""
    return asof(*read_scores(client, symbol), bar_times)


def sentiment_panel(client: Any, symbols: Iterable[str], calendar: Any) -> np.ndarray:
    """(len(calendar), len(symbols)) panel of each symbol's sentiment on a shared calendar."""
    pipe = client.pipeline(transaction=False)
    symbols = list(symbols)
    for symbol in symbols:
        pipe.hgetall(keys.sentiment(symbol))
    panel = np.empty((len(np.asarray(calendar)), len(symbols)))
    for column, stored in enumerate(pipe.execute()):
        panel[:, column] = asof(*_parse(stored), calendar)
    return panel
