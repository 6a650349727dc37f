"""The HTML tearsheet: sections, escaping, monthly returns by hand, robustness, downsampling."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest

from utils.reports import render_tearsheet
from utils.reports.charts import MAX_POINTS, downsample_minmax
from utils.reports.monthly import monthly_returns

# Month ends: Dec-23 110, Jan-24 121, Feb-24 90, Mar-24 99, from a starting capital of 100.
TIMES = ["2023-12-28", "2023-12-29", "2024-01-02", "2024-01-31", "2024-02-01", "2024-02-29", "2024-03-01"]
EQUITY = [100.0, 110.0, 99.0, 121.0, 100.0, 90.0, 99.0]
EXPECTED_MONTHS = {(2023, 12): 110 / 100 - 1, (2024, 1): 121 / 110 - 1, (2024, 2): 90 / 121 - 1,
                   (2024, 3): 99 / 90 - 1}
EXPECTED_YEARS = {2023: 0.10, 2024: 99 / 110 - 1}


def trade(index: int, symbol: str = "000001.SZ", **overrides) -> dict:
    row = dict(symbol=symbol, entry_time="2024-01-02", exit_time="2024-01-31", entry_price=10.0, exit_price=11.0,
               size=100.0, pnl=99.5 - index, return_pct=0.0995, commission=0.5, is_open=False)
    row.update(overrides)
    return row


def synthetic_result(**overrides) -> dict:
    peak = np.maximum.accumulate(EQUITY)
    result = {
        "metrics": {"total_return": -0.01, "sharpe_ratio": 1.23456, "max_drawdown": 0.2562, "num_trades": 2,
                    "win_rate": 0.5, "final_equity": 99.0, "max_drawdown_duration": 3},
        "equity_curve": {"time": TIMES, "equity": EQUITY, "drawdown": (1 - np.array(EQUITY) / peak).tolist()},
        "trades": [trade(0), trade(1, exit_time="", is_open=True)],
        "symbol_metrics": {"000001.SZ": {"total_return": -0.01, "sharpe_ratio": 1.0}},
        "strategy_config": {"strategy_type": "trend_following", "note": "<script>alert('x')</script>"},
        "device": "cpu",
        "compute_seconds": 0.125,
    }
    result.update(overrides)
    return result


class HeatTable(HTMLParser):
    """Rows of the monthly table: [year, (title or None) * 13]."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list] = []
        self.inside = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("class") == "heat":
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag == "td":
            self.rows[-1].append(attrs.get("title"))

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False

    def handle_data(self, data):
        if self.inside and self.rows and not self.rows[-1] and data.strip().isdigit():
            self.rows[-1].append(int(data))


def heat_rows(html: str) -> dict[int, list]:
    parser = HeatTable()
    parser.feed(html)
    return {row[0]: [None if t is None else float(t.rstrip(" %")) / 100 for t in row[1:]]
            for row in parser.rows if row}


def test_sections_and_formatting():
    html = render_tearsheet("bt-123", synthetic_result(), {"symbols": ["000001.SZ"], "start_time": "2023-12-28",
                                                          "end_time": "2024-03-01", "initial_capital": 100})
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for heading in ("Backtest bt-123", "Metrics", "Per symbol", "Equity curve", "Drawdown", "Monthly returns",
                    "Trades (2)"):
        assert heading in html
    assert html.count("<svg") == 2
    assert "-1.00 %" in html and "25.62 %" in html and "50.00 %" in html  # fractions shown as percent
    assert "1.235" in html  # ratios plain
    assert "2023-12-28 – 2024-03-01" in html and "0.125 s" in html and ">open<" in html
    assert "Parameter sweep" not in html and "Walk-forward" not in html


def test_self_contained_without_scripts_or_fetches():
    html = render_tearsheet("bt-1", synthetic_result())
    lowered = html.lower()
    for forbidden in ("<script", "src=", "href=", "http:", "https:", "url(", "@import"):
        assert forbidden not in lowered


def test_user_text_is_escaped_everywhere():
    evil = "<script>alert('x')</script>"
    result = synthetic_result(trades=[trade(0, symbol=evil, direction=evil)], device=evil,
                              sweep={"metric": evil, "rows": [{"p": evil, evil: 1.0}], "best": {"p": evil}},
                              walk_forward=[{"window": evil, "best_params": {"p": evil}}])
    html = render_tearsheet("bt-<b>", result, {"symbols": [evil], "start_time": evil})
    assert "<script" not in html.lower() and "bt-<b>" not in html
    assert "&lt;script&gt;" in html and "bt-&lt;b&gt;" in html


def test_monthly_returns_match_a_hand_computation():
    table = monthly_returns(TIMES, EQUITY, initial=100.0)
    assert table.years == [2023, 2024]
    assert table.months == pytest.approx(EXPECTED_MONTHS, rel=1e-12)
    assert table.year_totals == pytest.approx(EXPECTED_YEARS, rel=1e-12)
    assert np.prod([1 + r for r in table.year_totals.values()]) == pytest.approx(EQUITY[-1] / 100)
    # Without a starting capital the first point is the base.
    assert monthly_returns(TIMES, EQUITY).months[(2023, 12)] == pytest.approx(0.10)


@pytest.mark.parametrize("meta", [{"initial_capital": 100}, None])  # None: capital from the metrics
def test_monthly_table_in_the_page(meta):
    rows = heat_rows(render_tearsheet("bt-1", synthetic_result(), meta))
    assert set(rows) == {2023, 2024}
    assert rows[2023][11] == pytest.approx(EXPECTED_MONTHS[(2023, 12)], abs=1e-6)
    assert rows[2023][:11] == [None] * 11
    assert rows[2023][12] == pytest.approx(EXPECTED_YEARS[2023], abs=1e-6)
    assert rows[2024][:3] == pytest.approx([EXPECTED_MONTHS[(2024, m)] for m in (1, 2, 3)], abs=1e-6)
    assert rows[2024][3:12] == [None] * 9
    assert rows[2024][12] == pytest.approx(EXPECTED_YEARS[2024], abs=1e-6)


def test_heat_colours_are_green_for_gains_and_red_for_losses():
    html = render_tearsheet("bt-1", synthetic_result(), {"initial_capital": 100})
    colour = {float(title.rstrip(" %")): fill for fill, title in
              re.findall(r'style="background:#([0-9a-f]{6})" title="([^"]+)"', html)}
    gain, loss = colour[round(EXPECTED_MONTHS[(2024, 1)] * 100, 4)], colour[round(EXPECTED_MONTHS[(2024, 2)] * 100, 4)]
    assert int(gain[2:4], 16) > int(gain[0:2], 16)  # more green than red
    assert int(loss[0:2], 16) > int(loss[2:4], 16)


def test_empty_trades_and_missing_keys_render():
    html = render_tearsheet("bt-1", synthetic_result(trades=[]))
    assert "No trades." in html
    for broken in ({}, {"metrics": None, "equity_curve": [], "trades": "x", "strategy_config": "raw <text>"},
                   {"equity_curve": {"time": TIMES, "equity": [None] * len(TIMES)}},
                   {"equity_curve": {"time": ["bad"], "equity": [1.0]}},
                   {"sweep": {"rows": "x"}, "walk_forward": {"windows": None}}):
        page = render_tearsheet("bt-1", broken)
        assert "Backtest bt-1" in page and "</html>" in page
    assert "raw &lt;text&gt;" in render_tearsheet("bt-1", {"strategy_config": "raw <text>"})


def test_trade_table_is_truncated_with_a_note():
    html = render_tearsheet("bt-1", synthetic_result(trades=[trade(i) for i in range(600)]))
    assert "Trades (600)" in html and "first 500 of 600 trades" in html
    trades_part = html[html.index("Trades (600)"):]
    assert trades_part.count("<tr>") == 501  # header + 500


def test_sweep_top_rows_and_walk_forward():
    rows = [{"lookback_period": i, "sharpe_ratio": i / 10, "total_return": i / 100} for i in range(60)]
    windows = [{"train_start": "2020-01-01", "test_start": "2021-01-01", "best_params": {"lookback_period": 5},
                "out_of_sample": {"sharpe_ratio": 0.7, "total_return": 0.05}}]
    html = render_tearsheet("bt-1", synthetic_result(sweep={"metric": "sharpe_ratio", "rows": rows,
                                                            "best": {"lookback_period": 59}},
                                                     walk_forward=windows))
    sweep = html[html.index("Parameter sweep"):html.index("Walk-forward")]
    assert "Top 50 of 60" in sweep and sweep.count("<tr>") == 51
    assert sweep.index("<td>59</td>") < sweep.index("<td>58</td>")  # best first
    assert "<td>9</td>" not in sweep  # below the top 50
    walk = html[html.index("Walk-forward"):html.index("Trades (")]
    assert "best_params.lookback_period" in walk and "out_of_sample.sharpe_ratio" in walk and "5.00 %" in walk


def test_huge_curve_is_downsampled_keeping_extremes():
    count = 20_000
    rng = np.random.default_rng(7)
    equity = 1e6 * np.cumprod(1 + rng.normal(0, 0.01, count))
    times = [str(np.datetime64("1990-01-01") + i) for i in range(count)]
    keep = downsample_minmax(equity)
    assert keep.size <= MAX_POINTS and {0, count - 1, int(np.argmin(equity)), int(np.argmax(equity))} <= set(keep)
    assert np.all(np.diff(keep) > 0)
    result = synthetic_result(equity_curve={"time": times, "equity": equity.tolist()}, trades=[])
    html = render_tearsheet("bt-1", result)
    polylines = re.findall(r'<polyline[^>]* points="([^"]+)"', html)
    assert len(polylines) == 2 and all(len(p.split()) <= MAX_POINTS for p in polylines)
    assert len(html) < 400_000
    assert len(heat_rows(html)) == len({t[:4] for t in times})
