"""One self-contained HTML tearsheet per backtest: inline CSS and SVG, no scripts, no fetches.

Input is the JSON result the backtest worker stores (utils/tasks/backtest.py) and, optionally,
facts from the job record (symbols, period, capital). Every key is optional and every string
from either is escaped: the strategy config is user text.
"""
from __future__ import annotations

import json
import math
from html import escape
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from utils.reports.charts import line_chart
from utils.reports.monthly import heat_colour, monthly_returns

MAX_TRADES = 500
MAX_SWEEP_ROWS = 50
PERCENT = {"total_return", "annualized_return", "annualized_volatility", "max_drawdown", "win_rate",
           "exposure", "return_pct", "commission_rate"}
INTEGER = {"num_trades", "max_drawdown_duration"}
MONEY = {"final_equity", "pnl", "commission", "initial_capital", "entry_price", "exit_price"}
RATIO = {"sharpe_ratio", "sortino_ratio", "calmar_ratio", "profit_factor"}
SIGNED = {"pnl", "return_pct", "total_return", "annualized_return"}
LOWER_IS_BETTER = {"max_drawdown", "annualized_volatility", "max_drawdown_duration"}
METRIC_ORDER = ["total_return", "annualized_return", "annualized_volatility", "sharpe_ratio",
                "sortino_ratio", "calmar_ratio", "max_drawdown", "max_drawdown_duration", "win_rate",
                "profit_factor", "num_trades", "exposure", "final_equity"]
MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1f2328;margin:0;background:#f6f8fa}
main{max-width:1000px;margin:0 auto;padding:24px}
section{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:16px 20px;margin:0 0 18px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:16px;margin:0 0 10px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}dt{color:#59636e}dd{margin:0}
pre{background:#f6f8fa;padding:8px;border-radius:4px;margin:0;white-space:pre-wrap;word-break:break-all}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:3px 8px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
th{background:#f6f8fa;font-weight:600}td.l,th.l{text-align:left}
.scroll{overflow-x:auto}.pos{color:#1a7f37}.neg{color:#cf222e}.note,.empty{color:#59636e;font-style:italic}
table.heat td{text-align:center;min-width:44px}table.heat td.total{font-weight:600}
svg.chart{width:100%;height:auto}svg .grid{stroke:#eaeef2}svg .axis{font-size:11px;fill:#59636e}
"""


# ------------------------------------------------------------------ formatting
def _label(name: str) -> str:
    return escape(name.replace("_", " ").capitalize())


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def format_value(name: str, value: Any) -> str:
    """Escaped display text for one value; ``name`` (its last dotted part) picks the unit."""
    key = name.rsplit(".", 1)[-1]
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return escape(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))
    number = _number(value)
    if number is None:
        return "—" if isinstance(value, float) else escape(str(value))
    if key in PERCENT:
        return f"{number * 100:,.2f} %"
    if key in INTEGER:
        return f"{int(number):,}"
    if key in MONEY or abs(number) >= 1000:
        return f"{number:,.2f}"
    if isinstance(value, int):
        return str(value)
    if key in RATIO:
        return f"{number:.3f}"
    return escape(f"{number:.6g}")


def _cell_class(name: str, value: Any, left: bool = False) -> str:
    """'l' for left-aligned text; 'pos'/'neg' colours P&L and return columns by sign."""
    classes = ["l"] if left else []
    number = _number(value)
    if number and name.rsplit(".", 1)[-1] in SIGNED:
        classes.append("pos" if number > 0 else "neg")
    return " ".join(classes)


def _class_attr(classes: str) -> str:
    return f' class="{classes}"' if classes else ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, (list, tuple)) else []


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _table(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], left: set[str] = frozenset()) -> str:
    head = "".join(f'<th{_class_attr("l" if c in left else "")}>{escape(c)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = "".join(f'<td{_class_attr(_cell_class(c, row.get(c), c in left))}>{format_value(c, row.get(c))}</td>'
                        for c in columns)
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _records_table(records: Sequence[Any]) -> str:
    """A table of heterogeneous dicts: nested dicts become dotted columns, in first-seen order."""
    flat = [_flatten(r) for r in records if isinstance(r, Mapping)]
    columns: dict[str, None] = {}
    for row in flat:
        columns.update(dict.fromkeys(row))
    text_columns = {c for c in columns if any(isinstance(r.get(c), str) for r in flat)}
    return _table(list(columns), flat, text_columns)


def _section(title: str, body: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


# -------------------------------------------------------------------- sections
def _header(backtest_id: str, result: Mapping[str, Any], meta: Mapping[str, Any],
            curve: Mapping[str, Any]) -> str:
    config = result.get("strategy_config", meta.get("strategy_config"))
    config_text = config if isinstance(config, str) else json.dumps(config or {}, indent=2, sort_keys=True, default=str)
    symbols = (_sequence(meta.get("symbols")) or sorted(_mapping(result.get("symbol_metrics")))
               or sorted({str(t.get("symbol")) for t in _sequence(result.get("trades")) if isinstance(t, Mapping)}))
    times = _sequence(curve.get("time"))
    start = meta.get("start_time") or (times[0] if times else "")
    end = meta.get("end_time") or (times[-1] if times else "")
    seconds = _number(result.get("compute_seconds"))
    rows = [("Strategy config", f"<pre>{escape(config_text)}</pre>"),
            ("Symbols", escape(", ".join(str(s) for s in symbols)) or "—"),
            ("Period", f"{escape(str(start))} – {escape(str(end))}" if start or end else "—"),
            ("Device", escape(str(result.get("device") or meta.get("device") or "—"))),
            ("Compute time", f"{seconds:.3f} s" if seconds is not None else "—")]
    for name in ("initial_capital", "commission_rate", "created_at", "finished_at"):
        if meta.get(name) not in (None, ""):
            rows.append((_label(name), format_value(name, meta[name])))
    items = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    return f"<section><h1>Backtest {escape(backtest_id)}</h1><dl>{items}</dl></section>"


def _metrics(result: Mapping[str, Any]) -> str:
    metrics = _mapping(result.get("metrics"))
    names = [n for n in METRIC_ORDER if n in metrics] + sorted(n for n in metrics if n not in METRIC_ORDER)
    if not names:
        return _section("Metrics", '<p class="empty">No metrics in this result.</p>')
    rows = "".join(f'<tr><td class="l">{_label(n)}</td><td{_class_attr(_cell_class(n, metrics[n]))}>'
                   f"{format_value(n, metrics[n])}</td></tr>" for n in names)
    body = f'<table><tbody>{rows}</tbody></table>'
    per_symbol = _mapping(result.get("symbol_metrics"))
    if per_symbol:
        columns = [n for n in METRIC_ORDER if any(n in _mapping(m) for m in per_symbol.values())]
        table_rows = [{"symbol": s, **_mapping(m)} for s, m in sorted(per_symbol.items())]
        body += "<h2 style=\"margin-top:14px\">Per symbol</h2>" + _table(["symbol", *columns], table_rows, {"symbol"})
    return _section("Metrics", body)


def _charts(curve: Mapping[str, Any]) -> str:
    times = [str(t) for t in _sequence(curve.get("time"))]
    equity = [v if _number(v) is not None else math.nan for v in _sequence(curve.get("equity"))]
    drawdown = [v if _number(v) is not None else math.nan for v in _sequence(curve.get("drawdown"))]
    if equity and len(drawdown) != len(equity):
        values = np.asarray(equity, dtype=float)
        drawdown = (1 - values / np.fmax.accumulate(values)).tolist()
    equity_svg = line_chart(times, equity, label="Equity curve", value_format=lambda v: f"{v:,.0f}")
    drawdown_svg = line_chart(times, [-d for d in drawdown], label="Drawdown", colour="#cf222e",
                              fill_to_zero=True, value_format=lambda v: f"{v * 100:.1f} %")
    return _section("Equity curve", equity_svg) + _section("Drawdown", drawdown_svg)


def _initial_capital(result: Mapping[str, Any], meta: Mapping[str, Any]) -> float | None:
    initial = _number(meta.get("initial_capital"))
    if initial:
        return initial
    metrics = _mapping(result.get("metrics"))
    final, total = _number(metrics.get("final_equity")), _number(metrics.get("total_return"))
    return final / (1 + total) if final is not None and total is not None and total > -1 else None


def _monthly(result: Mapping[str, Any], meta: Mapping[str, Any], curve: Mapping[str, Any]) -> str:
    table = monthly_returns([str(t) for t in _sequence(curve.get("time"))],
                            [_number(v) for v in _sequence(curve.get("equity"))],
                            _initial_capital(result, meta))
    if not table.years:
        return _section("Monthly returns", '<p class="empty">No equity curve to compute monthly returns from.</p>')
    month_scale = max((abs(v) for v in table.months.values()), default=0.0)
    year_scale = max((abs(v) for v in table.year_totals.values()), default=0.0)

    def cell(value: float | None, scale: float, css: str = "") -> str:
        if value is None:
            return f"<td{_class_attr(css)}></td>"
        return (f'<td{_class_attr(css)} style="background:{heat_colour(value, scale)}" title="{value * 100:.4f} %">'
                f"{value * 100:.1f}</td>")

    head = "".join(f"<th>{m}</th>" for m in MONTH_NAMES)
    rows = []
    for year in table.years:
        cells = "".join(cell(table.months.get((year, m)), month_scale) for m in range(1, 13))
        rows.append(f'<tr><th class="l">{year}</th>{cells}{cell(table.year_totals[year], year_scale, "total")}</tr>')
    body = (f'<div class="scroll"><table class="heat"><thead><tr><th class="l">Year</th>{head}<th>Year</th></tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table></div>'
            '<p class="note">Returns in percent, compounded from month-end equity.</p>')
    return _section("Monthly returns", body)


def _sweep(result: Mapping[str, Any]) -> str:
    sweep = _mapping(result.get("sweep"))
    rows = [r for r in _sequence(sweep.get("rows")) if isinstance(r, Mapping)]
    if not sweep or (not rows and not sweep.get("best")):
        return ""
    metric = str(sweep.get("metric") or "")
    if metric:
        ranked = [r for r in rows if _number(_flatten(r).get(metric)) is not None]
        ranked.sort(key=lambda r: _number(_flatten(r)[metric]), reverse=metric not in LOWER_IS_BETTER)
        rows = ranked + [r for r in rows if r not in ranked]
    best = _mapping(sweep.get("best"))
    parts = []
    if metric:
        parts.append(f"<p>Ranked by <b>{escape(metric)}</b>.</p>")
    if best:
        parts.append("<p>Best: " + ", ".join(f"{escape(k)} = {format_value(k, v)}" for k, v in _flatten(best).items())
                     + "</p>")
    if rows:
        parts.append(_records_table(rows[:MAX_SWEEP_ROWS]))
        if len(rows) > MAX_SWEEP_ROWS:
            parts.append(f'<p class="note">Top {MAX_SWEEP_ROWS} of {len(rows):,} parameter sets.</p>')
    return _section("Parameter sweep", "".join(parts))


def _walk_forward(result: Mapping[str, Any]) -> str:
    windows = result.get("walk_forward")
    if isinstance(windows, Mapping):
        windows = windows.get("windows")
    windows = [w for w in _sequence(windows) if isinstance(w, Mapping)]
    if not windows:
        return ""
    return _section("Walk-forward windows", _records_table(windows)
                    + '<p class="note">Parameters chosen in sample; metrics measured out of sample.</p>')


def _trades(result: Mapping[str, Any]) -> str:
    trades = [t for t in _sequence(result.get("trades")) if isinstance(t, Mapping)]
    if not trades:
        return _section("Trades", '<p class="empty">No trades.</p>')
    columns = ["symbol", "entry_time", "exit_time", "entry_price", "exit_price", "size", "pnl", "return_pct",
               "commission"]
    if any("direction" in t for t in trades):
        columns.insert(1, "direction")
    shown = [{**t, "exit_time": t.get("exit_time") or ("open" if t.get("is_open") else "")} for t in trades[:MAX_TRADES]]
    note = (f'<p class="note">Showing the first {MAX_TRADES:,} of {len(trades):,} trades '
            f'(the full list is in GetBacktestResult).</p>' if len(trades) > MAX_TRADES else "")
    return _section(f"Trades ({len(trades):,})",
                    note + _table(columns, shown, {"symbol", "direction", "entry_time", "exit_time"}))


def render_tearsheet(backtest_id: str, result: dict, record_meta: dict | None = None) -> str:
    """The whole HTML page for one backtest result."""
    result = _mapping(result)
    meta = _mapping(record_meta)
    curve = _mapping(result.get("equity_curve"))
    sections = [_header(str(backtest_id), result, meta, curve), _metrics(result), _charts(curve),
                _monthly(result, meta, curve), _sweep(result), _walk_forward(result), _trades(result)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Backtest {escape(str(backtest_id))} — tearsheet</title>"
            f"<style>{CSS}</style></head><body><main>{''.join(sections)}</main></body></html>\n")
