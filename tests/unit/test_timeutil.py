"""The vectorised timestamp parser agrees with the scalar one on every input."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
from hypothesis import given, settings, strategies as st

from utils.data.timeutil import parse_time, parse_times

ODD = ["2024-01-01", "2024-01-01T09:30", "2024-01-01 09:30:00.123456", "2024-01-01T09:30:00Z",
       "2024-01-01T09:30:00+00:00", "2024-01-01T17:30:00+08:00", "2024-01-01T01:30:00-05:00", "garbage", "",
       "2024-13-01", "2024-02-30", "2024-01-01T09:30:00.123456789", "2024-01-01T25:00:00"]


def reference(texts):
    out = []
    for text in texts:
        try:
            out.append(parse_time(text))
        except ValueError:
            out.append(None)
    return out


def check(texts):
    times, ok = parse_times(texts)
    for text, value, good, expected in zip(texts, times.tolist(), ok.tolist(), reference(texts)):
        assert (good and value == expected) or (not good and expected is None), text


def test_known_shapes_alone_and_mixed():
    for text in ODD:
        check([text])
    check(ODD)
    check([t for t in ODD if t not in ("2024-13-01", "2024-02-30", "2024-01-01T25:00:00")])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)), min_size=1, max_size=20),
       st.sampled_from(["", "Z", "+00:00", "+08:00"]), st.booleans())
def test_random_datetimes(moments, suffix, with_space):
    texts = [m.isoformat(sep=" " if with_space else "T") + suffix for m in moments]
    check(texts)
