"""The intraday volume profile of a VWAP schedule, from a symbol's stored intraday bars.

Each of the last ``lookback_days`` trading days (UTC dates with bars) is cut into ``slices``
consecutive groups of its bars (``numpy.array_split``: equal counts, the first groups one bar
longer when they do not divide); a day's profile is its volume per group over its total volume, and
the profile is the mean of the day profiles. Days with fewer bars than slices, or no volume, are
skipped (they cannot say how volume spreads over N slices).
"""
from __future__ import annotations

import numpy as np

NS_PER_DAY = 86_400 * 10**9


class NoIntradayProfile(ValueError):
    """No stored day can give a profile of the asked number of slices."""


def intraday_volume_profile(times_ns: np.ndarray, volumes: np.ndarray, slices: int, lookback_days: int
                            ) -> np.ndarray:
    """(slices,) weights summing to 1: the mean normalised volume per slice of the last days."""
    times_ns = np.asarray(times_ns, dtype=np.int64)
    volumes = np.asarray(volumes, dtype=np.float64)
    days = times_ns // NS_PER_DAY
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]]) if days.size else np.empty(0, np.int64)
    bounds = list(zip(starts, list(starts[1:]) + [days.size]))
    profiles = []
    for start, stop in reversed(bounds):
        if len(profiles) == lookback_days:
            break
        day = volumes[start:stop]
        total = float(np.nansum(day))
        if day.size < slices or total <= 0:
            continue
        size, extra = divmod(day.size, slices)  # numpy.array_split's groups: the first ``extra`` one longer
        starts = np.arange(slices) * size + np.minimum(np.arange(slices), extra)
        profiles.append(np.add.reduceat(np.nan_to_num(day), starts) / total)
    if not profiles:
        raise NoIntradayProfile(f"no stored day has at least {slices} intraday bars with volume (of the last "
                                f"{lookback_days} days); import intraday bars, use fewer slices, or give "
                                f"volume_profile")
    profile = np.mean(np.asarray(profiles), axis=0)
    return profile / profile.sum()
