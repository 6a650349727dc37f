"""Calendar-month and calendar-year returns from an equity curve (compounding, not summing)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class MonthlyReturns:
    years: list[int]
    months: dict[tuple[int, int], float]  # (year, month 1..12) -> return fraction
    year_totals: dict[int, float]


def _year_month(time: str) -> tuple[int, int] | None:
    # ISO strings from format_time ('2024-01-02' or '2024-01-02T09:30:00Z'): no parsing needed.
    try:
        year, month = int(time[0:4]), int(time[5:7])
    except (TypeError, ValueError):
        return None
    return (year, month) if 1 <= month <= 12 else None


def monthly_returns(times: Sequence[str], equity: Sequence[float],
                    initial: float | None = None) -> MonthlyReturns:
    """Each month's return is its last equity over the previous month's last equity, minus 1.
    The first month is measured from ``initial`` (the starting capital) when given and
    positive, else from the curve's first point. Year totals compound the same way, so the
    product of all year totals equals the curve's total return from that base."""
    month_end: dict[tuple[int, int], float] = {}
    for time, value in zip(times, equity):
        key = _year_month(time)
        if key is not None and value is not None and value == value:  # skip NaN
            month_end[key] = float(value)  # points are in time order: the last one wins
    if not month_end:
        return MonthlyReturns([], {}, {})
    keys = sorted(month_end)
    base = initial if initial and initial > 0 else next(
        float(v) for t, v in zip(times, equity) if _year_month(t) is not None and v is not None and v == v)
    months: dict[tuple[int, int], float] = {}
    year_totals: dict[int, float] = {}
    previous = year_start = base
    for index, key in enumerate(keys):
        end = month_end[key]
        months[key] = end / previous - 1 if previous else 0.0
        previous = end
        if index + 1 == len(keys) or keys[index + 1][0] != key[0]:
            year_totals[key[0]] = end / year_start - 1 if year_start else 0.0
            year_start = end
    return MonthlyReturns(sorted(year_totals), months, year_totals)


def heat_colour(value: float, scale: float) -> str:
    """White at 0, deepening to green for gains and red for losses; ``scale`` maps to full colour."""
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    target = (26, 152, 80) if value >= 0 else (215, 48, 39)
    red, green, blue = (round(255 + (t - 255) * strength * 0.85) for t in target)
    return f"#{red:02x}{green:02x}{blue:02x}"
