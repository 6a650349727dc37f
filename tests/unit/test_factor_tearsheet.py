"""The factor tearsheet: page structure, every section, escaping, NaN, the chart helpers it adds,
and the by-quantile cumulative returns the factor worker stores for it."""
from __future__ import annotations

import math
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from utils.reports import render_factor_tearsheet
from utils.reports.charts import Series, bar_chart, histogram, palette
from utils.reports.factor_tearsheet import ROLLING_IC_ROWS, rolling_mean

SECTIONS = ("Information", "Information coefficient", "Mean return by quantile", "Cumulative returns",
            "Mean turnover by quantile")
VOID = {"meta", "br", "hr", "img", "input", "link"}
TIMES = [str(d.date()) for d in pd.bdate_range("2024-01-01", periods=60)]


def synthetic_result(**overrides) -> dict:
    rng = np.random.default_rng(1)
    ic = rng.normal(0.05, 0.1, size=(len(TIMES), 2)).tolist()
    ic[3] = [None, 0.2]  # a date without a 1-row IC
    period = dict(ic_mean=0.05, ic_std=0.1, risk_adjusted_ic=0.5, t_stat=3.87, p_value=0.0003, ic_skew=None,
                  ic_kurtosis=-0.2, pearson_ic_mean=0.04, pearson_icir=0.4, ann_alpha=0.12, beta=-0.05,
                  factor_return_mean=0.0004, top_minus_bottom=0.0021, rank_autocorrelation=0.91,
                  mean_return_by_quantile=[-0.002, 0.0, None], std_error_by_quantile=[0.0005, 0.0004, None],
                  mean_turnover_by_quantile=[0.3, 0.55, 0.28])
    result = {
        "loss_fraction": 0.0734, "loss_breakdown": "Dropped 7.3% of entries from factor data: 5.0% in forward "
                                                   "returns computation and 2.3% in binning phase",
        "dropped_dates": 2, "n_quantiles": 3,
        "periods": [{"period": 1, **period}, {"period": 5, **period, "ic_mean": 0.08}],
        "ic_series": {"time": TIMES, "ic": ic},
        "cumulative_returns": {"time": TIMES, "value": np.cumprod(1 + rng.normal(0, 0.01, len(TIMES))).tolist()},
        "quantile_cumulative_returns": {"time": TIMES, "value": [
            np.cumprod(1 + rng.normal(drift, 0.01, len(TIMES))).tolist() for drift in (-0.001, 0, 0.001)]},
        "device": "cpu", "compute_seconds": 0.25,
    }
    result.update(overrides)
    return result


META = {"symbols": ["000001.SZ", "600000.SH", "000002.SZ"], "symbol_count": 3, "factor": "cs_rank(close)",
        "start_time": "2024-01-01", "end_time": "2024-03-22", "long_short": True}


class Structure(HTMLParser):
    """Checks that every element closes in order; collects h2 headings and text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.headings: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)
        if self.stack and self.stack[-1] == "h2":
            self.headings.append(data)


def parse(html: str) -> Structure:
    parser = Structure()
    parser.feed(html)
    parser.close()
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
    return parser


def test_valid_page_with_every_section():
    html = render_factor_tearsheet("fa-123", synthetic_result(), META)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    page = parse(html)
    assert page.headings == list(SECTIONS)
    assert "Factor analysis fa-123" in html and "cs_rank(close)" in html
    # per period: IC series (IC + rolling mean) and histogram; quantile bars; 2 cumulative; turnover bars
    assert html.count("<svg") == 2 * 2 + 1 + 2 + 1
    assert html.count("<polyline") == 2 * 2 + 1 + 3
    assert "7.34 % of factor values dropped" in html and "2 (quantile edges not unique)" in html
    assert "3 quantiles" in html and "1 row, 5 rows" in html and "000001.SZ, 600000.SH" in html
    assert "0.050" in html and "0.080" in html and "21.0 bp" in html and "55.0 %" in html  # formats
    assert "-20.0 bp ± 5.0 bp" in html  # mean return ± standard error
    assert f"{ROLLING_IC_ROWS}-row mean" in html


def test_self_contained_without_scripts_or_fetches():
    lowered = render_factor_tearsheet("fa-1", synthetic_result(), META).lower()
    for forbidden in ("<script", "src=", "href=", "http:", "https:", "url(", "@import"):
        assert forbidden not in lowered


def test_user_text_is_escaped_everywhere():
    evil = "<script>alert('x')</script>"
    result = synthetic_result(loss_breakdown=evil, device=evil,
                              ic_series={"time": [evil] * 3, "ic": [[0.1, 0.2]] * 3})
    html = render_factor_tearsheet("fa-<b>", result, {"symbols": [evil], "factor": evil, "start_time": evil})
    parse(html)
    assert "<script" not in html.lower() and "fa-<b>" not in html
    assert "&lt;script&gt;" in html and "fa-&lt;b&gt;" in html


def test_nan_and_missing_data_render():
    page = parse(render_factor_tearsheet("fa-1", synthetic_result(), META))
    text = "".join(page.text)
    assert "—" in text and not re.search(r"\bnan\b|\binf\b", text, re.IGNORECASE)  # ic_skew None, Q3 None
    all_missing = synthetic_result(ic_series={"time": TIMES[:3], "ic": [[None, None]] * 3},
                                   cumulative_returns={"time": [], "value": []},
                                   quantile_cumulative_returns={"time": TIMES[:2], "value": [[None, None]] * 3})
    html = render_factor_tearsheet("fa-1", all_missing, META)
    parse(html)
    assert html.count("No data to plot.") == 2 * 2 + 2
    for broken in ({}, {"periods": None, "ic_series": "x", "loss_fraction": float("nan")},
                   {"periods": [{"period": 1}], "n_quantiles": None}, {"periods": [1, "x"]}):
        page = parse(render_factor_tearsheet("fa-1", broken))
        assert page.headings == list(SECTIONS)


def test_rolling_mean_is_pandas_with_half_a_window():
    values = np.random.default_rng(2).normal(size=100)
    values[[3, 10, 11, 12, 50]] = np.nan
    values[60:75] = np.nan
    expected = pd.Series(values).rolling(22, min_periods=11).mean().to_numpy()
    np.testing.assert_allclose(rolling_mean(values, 22), expected, rtol=1e-12, equal_nan=True)
    assert rolling_mean([], 22).size == 0 and np.isnan(rolling_mean([1.0, 2.0], 22)).all()


def test_bar_chart_and_histogram():
    svg = bar_chart(["Q1", "Q2", "Q3"], [Series("a", [1.0, -2.0, math.nan]), Series("b", [0.5, 0.5, 0.5], "#000")],
                    label="bars", value_format=lambda v: f"{v:g}")
    assert svg.count("<rect") == 2 + 5 and "a Q2: -2" in svg  # 2 legend swatches, no bar for NaN
    values = [0.1, 0.2, math.nan, 0.2, -0.3, None]
    svg = histogram([math.nan if v is None else v for v in values], label="h", value_format=lambda v: f"{v:.2f}",
                    bins=5)
    counts = [int(n) for n in re.findall(r"<title>count [^:]+: (\d+)</title>", svg)]
    assert sum(counts) == 4 and len(counts) <= 5
    assert histogram([math.nan], label="h", value_format=str) == '<p class="empty">No data to plot.</p>'
    assert palette(5)[0] == "#b2182b" and palette(5)[-1] == "#2166ac" and len(set(palette(7))) == 7


def test_stored_cumulative_returns_by_quantile():
    """The worker's stored by-quantile curves compound each quantile's mean forward return per date."""
    from utils.engine.factors.analysis import analyze_factor
    from utils.tasks.factor import result_document
    rng = np.random.default_rng(3)
    prices = 10 * np.cumprod(1 + rng.normal(0, 0.02, size=(80, 12)), axis=0)
    prices[:7, 3] = np.nan  # a late listing
    factor = rng.normal(size=prices.shape)
    factor[-2:] = np.nan
    analysis = analyze_factor(prices, factor, periods=(1, 3), quantiles=4, long_short=False)
    document = result_document(analysis, [1, 3], np.arange(80, dtype=np.int64) * 86_400 * 10**9, 78)
    labels = analysis.quantile_labels
    forward = np.full(prices.shape, np.nan)
    forward[:-1] = prices[1:] / prices[:-1] - 1
    kept = np.flatnonzero((labels[:78] > 0).any(axis=1))
    curves = document["quantile_cumulative_returns"]
    assert len(curves["time"]) == kept.size and len(curves["value"]) == 4
    for q in range(4):
        daily = [forward[t][labels[t] == q + 1].mean() if (labels[t] == q + 1).any() else 0.0 for t in kept]
        np.testing.assert_allclose(curves["value"][q], np.cumprod(1 + np.array(daily)), rtol=1e-12)


def test_group_statistics_get_their_section():
    group_period = dict(ic_mean=0.03, ic_std=0.2, risk_adjusted_ic=0.15, t_stat=1.2, p_value=0.2, ic_skew=0.1,
                        ic_kurtosis=0.4, mean_return_by_quantile=[-0.001, 0.0005, 0.002],
                        std_error_by_quantile=[0.0003, 0.0002, None])
    groups = [{"name": "<banks>", "periods": [{"period": 1, **group_period}, {"period": 5, **group_period}]},
              {"name": "property", "periods": [{"period": 1, **group_period, "ic_mean": -0.07},
                                               {"period": 5, **group_period}]}]
    html = render_factor_tearsheet("fa-9", synthetic_result(group_stats=groups), META)
    page = parse(html)
    assert page.headings == [*SECTIONS, "By group"]
    assert "&lt;banks&gt;" in html and "<banks>" not in html and "property" in html
    assert "-0.070" in html and "20.0 bp ± 2.0 bp" not in html and "-10.0 bp ± 3.0 bp" in html
    assert "By group" not in render_factor_tearsheet("fa-9", synthetic_result(), META)
