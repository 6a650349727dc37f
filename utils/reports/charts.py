"""Inline SVG line/area charts with min/max downsampling, for the HTML reports."""
from __future__ import annotations

from html import escape
from typing import Callable, Sequence

import numpy as np

MAX_POINTS = 2000
WIDTH, HEIGHT = 900, 260
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 70, 15, 12, 28


def downsample_minmax(values: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` points that keep each bucket's min and max, in order,
    plus the first and last point, so peaks and troughs survive the thinning."""
    count = values.size
    if count <= max_points:
        return np.arange(count)
    buckets = max(1, (max_points - 2) // 2)
    edges = np.linspace(0, count, buckets + 1).astype(np.int64)
    chosen = [0, count - 1]
    for start, stop in zip(edges[:-1], edges[1:]):
        if stop <= start:
            continue
        window = values[start:stop]
        chosen.append(start + int(np.argmin(window)))
        chosen.append(start + int(np.argmax(window)))
    return np.unique(np.asarray(chosen, dtype=np.int64))


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** np.floor(np.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = np.ceil(low / step) * step
    return [float(v) for v in np.arange(first, high + step * 1e-9, step)]


def line_chart(times: Sequence[str], values: Sequence[float], *, label: str,
               value_format: Callable[[float], str], colour: str = "#1f6feb",
               fill_to_zero: bool = False, max_points: int = MAX_POINTS) -> str:
    """One series against its bar index (bars are evenly spaced, weekends skipped), as SVG."""
    series = np.asarray(values, dtype=float)
    finite = np.isfinite(series)
    if series.size == 0 or not finite.any():
        return '<p class="empty">No data to plot.</p>'
    series = np.where(finite, series, np.nan)
    keep = downsample_minmax(np.nan_to_num(series, nan=float(np.nanmean(series))), max_points)
    xs_index, ys = keep, series[keep]
    low, high = float(np.nanmin(ys)), float(np.nanmax(ys))
    if fill_to_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high, low = high + (abs(high) or 1.0) * 0.01, low - (abs(low) or 1.0) * 0.01
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    last_index = max(series.size - 1, 1)

    def x_of(index: float) -> float:
        return PAD_LEFT + plot_w * index / last_index

    def y_of(value: float) -> float:
        return PAD_TOP + plot_h * (high - value) / (high - low)

    points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in zip(xs_index, ys) if np.isfinite(v))
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">']
    for tick in _nice_ticks(low, high):
        y = y_of(tick)
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(value_format(tick))}</text>')
    for index in sorted({0, series.size // 2, series.size - 1}):
        if index < len(times):
            anchor = "start" if index == 0 else "end" if index == series.size - 1 else "middle"
            parts.append(f'<text class="axis" x="{x_of(index):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
                         f'{escape(str(times[index])[:10])}</text>')
    if fill_to_zero:
        zero = y_of(0.0)
        first, last = x_of(xs_index[0]), x_of(xs_index[-1])
        parts.append(f'<polygon fill="{colour}" fill-opacity="0.25" '
                     f'points="{first:.1f},{zero:.1f} {points} {last:.1f},{zero:.1f}"/>')
    parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.4" points="{points}"/>')
    parts.append("</svg>")
    return "".join(parts)
