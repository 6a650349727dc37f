"""Tick timestamps to int64 nanoseconds, fast, with exactly ``parse_times``' rules and results.

Why: a batched message of 200 ticks spent more time matching each stamp against a regex and
handing NumPy strings than on everything else together. A feed writes every stamp in one form
(same length, same separators, same UTC suffix), so ``tick_times`` checks that form on the
message's bytes as one (ticks x characters) array and computes the nanoseconds with integer
arithmetic; any stamp off the form, or any field out of range, sends the whole message to
``parse_times``, which stays the reference. ``tick_time`` is the one-stamp version.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from utils.data.timeutil import _PLAIN_ISO, parse_time, parse_times

NS_PER_SECOND = 10**9
SUFFIXES = ("+00:00", "Z", "")


def tick_time(text: str) -> int | None:
    """``parse_times`` of one stamp without arrays (same rules, same nanoseconds); None if bad."""
    stem = text[:-6] if text.endswith("+00:00") else text[:-1] if text.endswith("Z") else text
    if _PLAIN_ISO.match(stem) and 1678 <= int(stem[:4]) <= 2261:
        try:
            return int(np.datetime64(stem, "ns").view(np.int64))
        except ValueError:  # plain-looking but impossible (month 13...): the general parser decides
            pass
    try:
        return parse_time(text)
    except ValueError:
        return None


def tick_times(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``parse_times(texts)``: (int64 ns, ok mask). Stamps are taken in groups of one length
    (``isoformat`` drops a zero fraction, so a feed has two), each group at once."""
    lengths = set(map(len, texts))
    if len(lengths) == 1:
        times = _uniform_times(texts)
        return parse_times(texts) if times is None else (times, np.ones(len(texts), dtype=np.bool_))
    if len(lengths) > 4:
        return parse_times(texts)
    times, ok = np.zeros(len(texts), dtype=np.int64), np.ones(len(texts), dtype=np.bool_)
    for length in lengths:
        rows = [i for i, text in enumerate(texts) if len(text) == length]
        group = [texts[i] for i in rows]
        uniform = _uniform_times(group)
        times[rows], ok[rows] = (uniform, True) if uniform is not None else parse_times(group)
    return times, ok


@lru_cache(maxsize=64)
def _layout(stem_length: int, suffix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(digit columns, literal columns, their bytes, weights) of 'YYYY-MM-DD[T| ]HH:MM[:SS[.f...]]'
    + suffix; column 10 (T or space) is checked apart. ``digits @ weights`` gives year, month,
    day, hour, minute, second and the fraction in ns. None for a length no plain stamp has."""
    if stem_length not in (10, 16, 19) and not 21 <= stem_length <= 26:
        return None
    template = "dddd-dd-dd" + ("Tdd:dd" if stem_length >= 16 else "") + (":dd" if stem_length >= 19 else "")
    fraction_digits = max(0, stem_length - 20)
    if fraction_digits:
        template += "." + "d" * fraction_digits
    template += suffix
    digits = np.array([i for i, c in enumerate(template) if c == "d"])
    literals = np.array([i for i, c in enumerate(template) if c != "d" and i != 10], dtype=np.int64)
    widths = [4, 2, 2, 2, 2, 2, fraction_digits][:{10: 3, 16: 5, 19: 6}.get(stem_length, 7)]
    weights = np.zeros((len(digits), 7), dtype=np.int64)
    row = 0
    for field_index, width in enumerate(widths):
        scale = 10 ** (9 - width) if field_index == 6 else 1  # the fraction, in ns
        for position in range(width):
            weights[row, field_index] = 10 ** (width - 1 - position) * scale
            row += 1
    return digits, literals, np.frombuffer(template.encode(), np.uint8)[literals], weights


MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _uniform_times(texts: list[str]) -> np.ndarray | None:
    """Nanoseconds when every stamp (all of one length) has the first one's form and valid
    fields; else None."""
    first = texts[0]
    suffix = next(s for s in SUFFIXES if first.endswith(s))
    width = len(first)
    layout = _layout(width - len(suffix), suffix)
    if layout is None:
        return None
    try:
        raw = "".join(texts).encode("ascii")
    except UnicodeEncodeError:
        return None
    table = np.frombuffer(raw, np.uint8).reshape(len(texts), width)
    digit_columns, literal_columns, literal_bytes, weights = layout
    digits = table[:, digit_columns] - np.uint8(48)  # below '0' wraps past 9
    if digits.max() > 9 or not (table[:, literal_columns] == literal_bytes).all():
        return None
    if width - len(suffix) > 10 and not ((table[:, 10] == ord("T")) | (table[:, 10] == ord(" "))).all():
        return None
    if (table[:, :10] == table[0, :10]).all():  # one day (a feed's usual message): its date once
        return _one_day_times(texts[0][:10], digits, weights)
    year, month, day, hour, minute, second, fraction = (digits.astype(np.int64) @ weights).T
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    valid = ((year >= 1678) & (year <= 2261) & (month >= 1) & (month <= 12) & (day >= 1)
             & (day <= MONTH_DAYS[np.clip(month, 0, 12)] + (leap & (month == 2))) & (hour <= 23) & (minute <= 59)
             & (second <= 59))
    if not valid.all():
        return None  # let parse_times decide (and reject) exactly as it always has
    # days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    shifted = year - (month <= 2)
    era = shifted // 400
    year_of_era = shifted - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146097 + year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year - 719468
    return (days * 86_400 + hour * 3600 + minute * 60 + second) * NS_PER_SECOND + fraction


def _one_day_times(date: str, digits: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    """``_uniform_times`` of stamps sharing ``date`` ('YYYY-MM-DD', digits already checked)."""
    year, month, day = int(date[:4]), int(date[5:7]), int(date[8:10])
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not (1678 <= year <= 2261 and 1 <= month <= 12 and 1 <= day <= MONTH_DAYS[month] + (leap and month == 2)):
        return None
    shifted = year - (month <= 2)
    era, year_of_era = divmod(shifted, 400)
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    days = era * 146097 + year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year - 719468
    # hour .. fraction: exact in float64 (every partial sum is an integer below 2**53)
    fields = (digits[:, 8:].astype(np.float64) @ weights[8:, 3:].astype(np.float64)).astype(np.int64)
    if fields.shape[0] and (fields[:, :3].max(axis=0) > (23, 59, 59)).any():
        return None
    return days * 86_400 * NS_PER_SECOND + fields @ np.array([3600 * NS_PER_SECOND, 60 * NS_PER_SECOND,
                                                              NS_PER_SECOND, 1], dtype=np.int64)
