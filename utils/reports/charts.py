"""Inline SVG charts for the HTML reports: lines and areas (min/max downsampled), grouped bars,
histograms. No scripts: hover text is SVG <title>."""
from __future__ import annotations

from html import escape
import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

MAX_POINTS = 2000
WIDTH, HEIGHT = 900, 260
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 70, 15, 12, 28
DIVERGING = ("#b2182b", "#ef8a62", "#8c959f", "#67a9cf", "#2166ac")  # bottom .. top quantile
CATEGORICAL = ("#1f6feb", "#bf8700", "#8250df", "#1a7f37", "#cf222e", "#57606a", "#e16f24", "#0598bc")


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


class Series(NamedTuple):
    """One named series of a chart: its values and colour (``width``: the line's stroke)."""

    name: str
    values: Sequence[float]
    colour: str = "#1f6feb"
    width: float = 1.4


def palette(count: int, anchors: Sequence[str] = DIVERGING) -> list[str]:
    """``count`` colours interpolated along ``anchors`` (bottom quantile red ... top blue)."""
    rgb = np.array([[int(a[i:i + 2], 16) for i in (1, 3, 5)] for a in anchors], dtype=float)
    positions = np.linspace(0, len(anchors) - 1, count) if count > 1 else np.array([len(anchors) - 1.0])
    colours = []
    for position in positions:
        low = min(int(position), len(anchors) - 2)
        mix = rgb[low] + (rgb[low + 1] - rgb[low]) * (position - low)
        colours.append("#" + "".join(f"{int(round(c)):02x}" for c in mix))
    return colours


def _value_range(arrays: Sequence[np.ndarray], include_zero: bool) -> tuple[float, float]:
    low = min(float(np.nanmin(a)) for a in arrays if np.isfinite(a).any())
    high = max(float(np.nanmax(a)) for a in arrays if np.isfinite(a).any())
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        high, low = high + (abs(high) or 1.0) * 0.01, low - (abs(low) or 1.0) * 0.01
    return low, high


def _frame(low: float, high: float, label: str, value_format: Callable[[float], str],
           legend: Sequence[Series] = ()) -> tuple[list[str], Callable[[float], float]]:
    """The SVG's opening tag, horizontal grid lines with value labels and a legend; and the
    value -> y mapping of the plot area."""
    top = PAD_TOP + (18 if legend else 0)  # the legend gets a row of its own above the plot
    plot_h = HEIGHT - top - PAD_BOTTOM

    def y_of(value: float) -> float:
        return top + plot_h * (high - value) / (high - low)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">']
    for tick in _nice_ticks(low, high):
        y = y_of(tick)
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(value_format(tick))}</text>')
    if low < 0 < high:
        parts.append(f'<line stroke="#8c959f" stroke-width="0.8" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" '
                     f'y1="{y_of(0.0):.1f}" y2="{y_of(0.0):.1f}"/>')
    x = PAD_LEFT + 8
    for series in legend:  # one row of swatches along the top edge
        parts.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{series.colour}"/>'
                     f'<text class="axis" x="{x + 14}" y="13">{escape(series.name)}</text>')
        x += 24 + 7 * len(series.name)
    return parts, y_of


def lines_chart(times: Sequence[str], series: Sequence[Series], *, label: str,
                value_format: Callable[[float], str], fill_to_zero: bool = False,
                max_points: int = MAX_POINTS) -> str:
    """Series sharing one time axis (their bar index: bars are evenly spaced, weekends skipped),
    each min/max-downsampled, as SVG; a legend when there is more than one."""
    arrays = [np.asarray(s.values, dtype=float) for s in series]
    arrays = [np.where(np.isfinite(a), a, np.nan) for a in arrays]
    if not arrays or not any(np.isfinite(a).any() for a in arrays):
        return '<p class="empty">No data to plot.</p>'
    low, high = _value_range(arrays, fill_to_zero)
    length = max(a.size for a in arrays)
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    last_index = max(length - 1, 1)

    def x_of(index: float) -> float:
        return PAD_LEFT + plot_w * index / last_index

    parts, y_of = _frame(low, high, label, value_format, series if len(series) > 1 else ())
    for index in sorted({0, length // 2, length - 1}):
        if index < len(times):
            anchor = "start" if index == 0 else "end" if index == length - 1 else "middle"
            parts.append(f'<text class="axis" x="{x_of(index):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
                         f'{escape(str(times[index])[:10])}</text>')
    for spec, values in zip(series, arrays):
        if not np.isfinite(values).any():
            continue
        keep = downsample_minmax(np.nan_to_num(values, nan=float(np.nanmean(values))), max_points)
        points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in zip(keep, values[keep]) if np.isfinite(v))
        if fill_to_zero:
            zero = y_of(0.0)
            parts.append(f'<polygon fill="{spec.colour}" fill-opacity="0.25" points="{x_of(keep[0]):.1f},'
                         f'{zero:.1f} {points} {x_of(keep[-1]):.1f},{zero:.1f}"/>')
        parts.append(f'<polyline fill="none" stroke="{spec.colour}" stroke-width="{spec.width}" points="{points}"/>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(times: Sequence[str], values: Sequence[float], *, label: str,
               value_format: Callable[[float], str], colour: str = "#1f6feb",
               fill_to_zero: bool = False, max_points: int = MAX_POINTS) -> str:
    """One series against its bar index, as SVG."""
    return lines_chart(times, [Series(label, values, colour)], label=label, value_format=value_format,
                       fill_to_zero=fill_to_zero, max_points=max_points)


def bar_chart(categories: Sequence[str], series: Sequence[Series], *, label: str,
              value_format: Callable[[float], str], max_labels: int = 12) -> str:
    """Grouped vertical bars from zero: one group per category, one bar per series in each
    (NaN: no bar), as SVG; a legend when there is more than one series."""
    arrays = [np.asarray(s.values, dtype=float)[:len(categories)] for s in series]
    if not categories or not arrays or not any(np.isfinite(a).any() for a in arrays):
        return '<p class="empty">No data to plot.</p>'
    low, high = _value_range(arrays, include_zero=True)
    parts, y_of = _frame(low, high, label, value_format, series if len(series) > 1 else ())
    slot = (WIDTH - PAD_LEFT - PAD_RIGHT) / len(categories)
    bar = slot * 0.8 / len(series)
    step = max(1, math.ceil(len(categories) / max_labels))
    zero = y_of(0.0)
    for position, category in enumerate(categories):
        left = PAD_LEFT + slot * position + slot * 0.1
        for index, (spec, values) in enumerate(zip(series, arrays)):
            value = values[position] if position < values.size else math.nan
            if not math.isfinite(value):
                continue
            top, bottom = sorted((y_of(value), zero))
            parts.append(f'<rect x="{left + bar * index:.1f}" y="{top:.1f}" width="{max(bar - 1, 0.5):.1f}" '
                         f'height="{max(bottom - top, 0.5):.1f}" fill="{spec.colour}">'
                         f'<title>{escape(f"{spec.name} {category}: {value_format(value)}")}</title></rect>')
        if position % step == 0:
            parts.append(f'<text class="axis" x="{PAD_LEFT + slot * (position + 0.5):.1f}" y="{HEIGHT - 8}" '
                         f'text-anchor="middle">{escape(str(category))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: Sequence[float], *, label: str, value_format: Callable[[float], str],
              bins: int = 25, colour: str = "#1f6feb") -> str:
    """The distribution of the finite ``values`` in ``bins`` equal-width bins (bars labelled by
    their centres), as SVG."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return '<p class="empty">No data to plot.</p>'
    counts, edges = np.histogram(finite, bins=bins)
    centres = [value_format(v) for v in (edges[:-1] + edges[1:]) / 2]
    return bar_chart(centres, [Series("count", counts.astype(float), colour)], label=label,
                     value_format=lambda v: f"{v:,.0f}", max_labels=7)
