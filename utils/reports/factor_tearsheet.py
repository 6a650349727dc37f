"""One self-contained HTML tearsheet per factor analysis, after alphalens' full tear sheet:
inline CSS and SVG, no scripts, no fetches.

Input is the JSON result the factor worker stores (``utils/tasks/factor.py``: periods' statistics,
the IC series, the cumulative returns overall and by quantile) and, optionally, facts from the
job record (the factor expression, symbols, dates, options). Every key is optional, null numbers
(NaN) show as "—", and every string is escaped: the expression and symbols are user text.
"""
from __future__ import annotations

import math
from html import escape
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from utils.reports.charts import CATEGORICAL, Series, bar_chart, histogram, line_chart, lines_chart, palette
from utils.reports.tearsheet import CSS, _mapping, _number, _section, _sequence

ROLLING_IC_ROWS = 22  # alphalens' plot_ic_ts: a one-month rolling mean
MAX_LISTED_SYMBOLS = 20
FACTOR_CSS = "h3{font-size:14px;margin:14px 0 6px}.note{margin:6px 0 0}"

# The information table: (result key, label, format), in alphalens' order and then the rest.
INFORMATION_ROWS = [
    ("ic_mean", "IC mean", "ratio"), ("ic_std", "IC std.", "ratio"),
    ("risk_adjusted_ic", "Risk-adjusted IC", "ratio"), ("t_stat", "t-stat (IC)", "ratio"),
    ("p_value", "p-value (IC)", "ratio"), ("ic_skew", "IC skew", "ratio"), ("ic_kurtosis", "IC kurtosis", "ratio"),
    ("pearson_ic_mean", "Pearson IC mean", "ratio"), ("pearson_icir", "Pearson ICIR", "ratio"),
    ("ann_alpha", "Ann. alpha", "ratio"), ("beta", "Beta", "ratio"),
    ("factor_return_mean", "Factor return mean", "bps"), ("top_minus_bottom", "Top − bottom quantile", "bps"),
    ("rank_autocorrelation", "Rank autocorrelation", "ratio")]
GROUP_ROWS = INFORMATION_ROWS[:7]  # alphalens' information table, per group


def _bps(value: float) -> str:
    return f"{value * 1e4:,.1f} bp"


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def _ratio(value: float) -> str:
    return f"{value:.3f}"


FORMATS: dict[str, Callable[[float], str]] = {"bps": _bps, "percent": _percent, "ratio": _ratio}


def _show(value: Any, kind: str = "ratio") -> str:
    number = _number(value)
    return "—" if number is None else escape(FORMATS[kind](number))


def _floats(values: Any) -> list[float]:
    """A stored list of numbers as floats, null (NaN) and anything else as NaN."""
    return [number if (number := _number(v)) is not None else math.nan for v in _sequence(values)]


def rolling_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of the finite values among the last ``window`` (NaN until the window holds at least
    half its length of them)."""
    series = np.asarray(values, dtype=float)
    finite = np.isfinite(series)
    sums = np.cumsum(np.where(finite, series, 0.0))
    counts = np.cumsum(finite)
    lagged_sums = np.concatenate([np.zeros(min(window, series.size)), sums[:-window]]) if series.size else sums
    lagged_counts = np.concatenate([np.zeros(min(window, series.size)), counts[:-window]]) if series.size else counts
    inside = counts - lagged_counts
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums - lagged_sums) / inside
    return np.where(inside >= max(1, window // 2), means, np.nan)


def _period_name(period: Any) -> str:
    return f"{period} row" if period == 1 else f"{period} rows"


def _periods(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [p for p in _sequence(result.get("periods")) if isinstance(p, Mapping)]


def _n_quantiles(result: Mapping[str, Any], periods: Sequence[Mapping[str, Any]]) -> int:
    stored = _number(result.get("n_quantiles"))
    if stored is not None and stored >= 1:
        return int(stored)
    return max((len(_sequence(p.get("mean_return_by_quantile"))) for p in periods), default=0)


def _dl(rows: Sequence[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{escape(label)}</dt><dd>{value}</dd>" for label, value in rows) + "</dl>"


# -------------------------------------------------------------------- sections
def _header(job_id: str, result: Mapping[str, Any], meta: Mapping[str, Any],
            periods: Sequence[Mapping[str, Any]]) -> str:
    symbols = [str(s) for s in _sequence(meta.get("symbols"))]
    count = _number(meta.get("symbol_count"))
    count = int(count) if count is not None else len(symbols)
    listed = ", ".join(symbols[:MAX_LISTED_SYMBOLS]) + (" …" if count > MAX_LISTED_SYMBOLS else "")
    dates = [str(t) for t in _sequence(_mapping(result.get("ic_series")).get("time"))]
    start = meta.get("start_time") or (dates[0] if dates else "")
    end = meta.get("end_time") or (dates[-1] if dates else "")
    bins = _number(meta.get("bins"))
    n_quantiles = _n_quantiles(result, periods)
    grouping = f"{int(bins)} equal-width bins" if bins else (f"{n_quantiles} quantiles" if n_quantiles else "—")
    loss = _number(result.get("loss_fraction"))
    dropped = _number(result.get("dropped_dates"))
    seconds = _number(result.get("compute_seconds"))
    factor = meta.get("factor")
    rows = [("Factor", f"<pre>{escape(str(factor))}</pre>" if factor not in (None, "") else "—"),
            ("Symbols", f"{count:,}" + (f" ({escape(listed)})" if listed else "")),
            ("Period", f"{escape(str(start))} – {escape(str(end))}" if start or end else "—"),
            ("Factor dates analysed", f"{len(dates):,}"),
            ("Forward-return periods", escape(", ".join(_period_name(p.get("period")) for p in periods)) or "—"),
            ("Grouping", escape(grouping)),
            ("Loss fraction", escape(f"{loss * 100:.2f} % of factor values dropped") if loss is not None else "—")]
    if dropped:
        rows.append(("Dates dropped", f"{int(dropped):,} (quantile edges not unique)"))
    breakdown = result.get("loss_breakdown")
    if breakdown:
        rows.append(("Loss breakdown", f"<pre>{escape(str(breakdown))}</pre>"))
    for name, label in (("long_short", "Long/short"), ("group_adjust", "Group adjusted"),
                        ("equal_weight", "Equal weights")):
        if isinstance(meta.get(name), bool):
            rows.append((label, "yes" if meta[name] else "no"))
    rows.append(("Device", escape(str(result.get("device") or meta.get("device") or "—"))))
    rows.append(("Compute time", f"{seconds:.3f} s" if seconds is not None else "—"))
    for name, label in (("created_at", "Created at"), ("finished_at", "Finished at")):
        if meta.get(name):
            rows.append((label, escape(str(meta[name]))))
    return f"<section><h1>Factor analysis {escape(job_id)}</h1>{_dl(rows)}</section>"


def _period_table(periods: Sequence[Mapping[str, Any]], rows: Sequence[tuple[str, str, str]]) -> str:
    """A table with one column per period and one row per (key, label, kind)."""
    head = '<th class="l">Forward return over</th>' + "".join(
        f"<th>{escape(_period_name(p.get('period')))}</th>" for p in periods)
    body = "".join(f'<tr><td class="l">{escape(label)}</td>'
                   + "".join(f"<td>{_show(p.get(key), kind)}</td>" for p in periods) + "</tr>"
                   for key, label, kind in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _information(periods: Sequence[Mapping[str, Any]]) -> str:
    if not periods:
        return _section("Information", '<p class="empty">No period statistics in this result.</p>')
    return _section("Information", _period_table(periods, INFORMATION_ROWS) +
                    '<p class="note">IC: Spearman rank correlation of the factor with the forward return, '
                    'per date. Returns are per period, not per row.</p>')


def _ic(result: Mapping[str, Any], periods: Sequence[Mapping[str, Any]]) -> str:
    series = _mapping(result.get("ic_series"))
    times = [str(t) for t in _sequence(series.get("time"))]
    rows = [_sequence(row) for row in _sequence(series.get("ic"))]
    if not periods or not times:
        return _section("Information coefficient", '<p class="empty">No IC series in this result.</p>')
    parts = []
    for index, stats in enumerate(periods):
        name = _period_name(stats.get("period"))
        values = [_number(row[index]) if index < len(row) else None for row in rows]
        values = [math.nan if v is None else v for v in values]
        parts.append(f"<h3>{escape(name)} forward return</h3>")
        parts.append(lines_chart(times, [Series("IC", values, "#8c959f", 1.0),
                                         Series(f"{ROLLING_IC_ROWS}-row mean", rolling_mean(values, ROLLING_IC_ROWS),
                                                "#e16f24", 2.0)],
                                 label=f"IC, {name}", value_format=lambda v: f"{v:.2f}"))
        parts.append(histogram(values, label=f"IC distribution, {name}", value_format=lambda v: f"{v:.2f}"))
        parts.append(f'<p class="note">Mean {_show(stats.get("ic_mean"))}, std. {_show(stats.get("ic_std"))}; '
                     f"{sum(1 for v in values if math.isfinite(v)):,} dates with an IC.</p>")
    return _section("Information coefficient", "".join(parts))


def _by_quantile_table(periods: Sequence[Mapping[str, Any]], n_quantiles: int, key: str,
                       kind: str, error_key: str | None = None) -> str:
    head = '<th class="l">Quantile</th>' + "".join(f"<th>{escape(_period_name(p.get('period')))}</th>"
                                                   for p in periods)
    rows = []
    for q in range(n_quantiles):
        cells = []
        for stats in periods:
            values, errors = _sequence(stats.get(key)), _sequence(stats.get(error_key)) if error_key else []
            text = _show(values[q] if q < len(values) else None, kind)
            error = _number(errors[q]) if q < len(errors) else None
            cells.append(f"<td>{text}" + (f" ± {escape(FORMATS[kind](error))}" if error is not None else "") + "</td>")
        rows.append(f'<tr><td class="l">Q{q + 1}</td>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f"</table></div>")


def _period_series(periods: Sequence[Mapping[str, Any]], key: str) -> list[Series]:
    return [Series(_period_name(p.get("period")), _floats(p.get(key)), CATEGORICAL[i % len(CATEGORICAL)])
            for i, p in enumerate(periods)]


def _returns(result: Mapping[str, Any], periods: Sequence[Mapping[str, Any]], n_quantiles: int) -> str:
    if not periods or not n_quantiles:
        return _section("Mean return by quantile", '<p class="empty">No quantile returns in this result.</p>')
    categories = [f"Q{q + 1}" for q in range(n_quantiles)]
    chart = bar_chart(categories, _period_series(periods, "mean_return_by_quantile"),
                      label="Mean return by quantile", value_format=_bps)
    note = ('<p class="note">Mean forward return of each quantile over the period (demeaned when long/short), '
            "± its standard error.</p>")
    return _section("Mean return by quantile", chart + _by_quantile_table(
        periods, n_quantiles, "mean_return_by_quantile", "bps", "std_error_by_quantile") + note)


def _cumulative(result: Mapping[str, Any], periods: Sequence[Mapping[str, Any]]) -> str:
    first = _period_name(periods[0].get("period")) if periods else "first period"
    curve = _mapping(result.get("cumulative_returns"))
    overall = line_chart([str(t) for t in _sequence(curve.get("time"))], _floats(curve.get("value")),
                         label="Cumulative factor-weighted return", colour="#1a7f37",
                         value_format=lambda v: f"{v:.2f}")
    by_quantile = _mapping(result.get("quantile_cumulative_returns"))
    lines = [_floats(values) for values in _sequence(by_quantile.get("value"))]
    body = (f"<h3>Factor-weighted portfolio ({escape(first)} returns, growth of 1)</h3>{overall}")
    if lines:
        colours = palette(len(lines))
        chart = lines_chart([str(t) for t in _sequence(by_quantile.get("time"))],
                            [Series(f"Q{q + 1}", values, colours[q], 1.6) for q, values in enumerate(lines)],
                            label="Cumulative return by quantile", value_format=lambda v: f"{v:.2f}")
        body += f"<h3>By quantile ({escape(first)} mean returns compounded, growth of 1)</h3>{chart}"
    return _section("Cumulative returns", body)


def _turnover(periods: Sequence[Mapping[str, Any]], n_quantiles: int) -> str:
    if not periods or not n_quantiles:
        return _section("Mean turnover by quantile", '<p class="empty">No turnover in this result.</p>')
    categories = [f"Q{q + 1}" for q in range(n_quantiles)]
    chart = bar_chart(categories, _period_series(periods, "mean_turnover_by_quantile"),
                      label="Mean turnover by quantile", value_format=_percent)
    autocorrelation = ", ".join(f"{escape(_period_name(p.get('period')))}: {_show(p.get('rank_autocorrelation'))}"
                                for p in periods)
    return _section("Mean turnover by quantile", chart + _by_quantile_table(
        periods, n_quantiles, "mean_turnover_by_quantile", "percent")
        + '<p class="note">Mean share of each quantile\'s names that were not in it one period earlier. '
          f"Factor rank autocorrelation — {autocorrelation}.</p>")


def _groups(result: Mapping[str, Any], n_quantiles: int) -> str:
    """``by_group``'s statistics: each group's IC table and mean return by quantile (nothing
    without groups)."""
    groups = [_mapping(group) for group in _sequence(result.get("group_stats"))]
    if not groups:
        return ""
    parts = []
    for group in groups:
        periods = [_mapping(period) for period in _sequence(group.get("periods"))]
        parts.append(f"<h3>{escape(str(group.get('name', '')))}</h3>" + _period_table(periods, GROUP_ROWS)
                     + _by_quantile_table(periods, n_quantiles, "mean_return_by_quantile", "bps",
                                          "std_error_by_quantile"))
    return _section("By group", "".join(parts) + '<p class="note">IC ranked within each group; mean return by '
                                                 "quantile of the group's names, ± its standard error.</p>")


def render_factor_tearsheet(job_id: str, result: dict, record_meta: dict | None = None) -> str:
    """The whole HTML page for one factor analysis result."""
    result = _mapping(result)
    meta = _mapping(record_meta)
    periods = _periods(result)
    n_quantiles = _n_quantiles(result, periods)
    sections = [_header(str(job_id), result, meta, periods), _information(periods), _ic(result, periods),
                _returns(result, periods, n_quantiles), _cumulative(result, periods), _turnover(periods, n_quantiles),
                _groups(result, n_quantiles)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Factor analysis {escape(str(job_id))} — tearsheet</title>"
            f"<style>{CSS}{FACTOR_CSS}</style></head><body><main>{''.join(sections)}</main></body></html>\n")
