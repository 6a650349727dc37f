"""``analyze_factor`` against alphalens-reloaded: every reported field, on random panels with ties
and NaNs and on a real-like universe (late listings, gaps, a delisting, holidays).

alphalens gets the same data the way a user would give it: prices as a dates × symbols frame on
business days with holidays removed (its inferred trading calendar is then our rows), the factor
as a (date, asset) Series without the panel's NaN cells (a NaN cell is "no value", not a loss).
Conventions mapped here, each on purpose:
  * ``filter_zscore=0`` is "off" for us (the proto's zero); alphalens needs ``None`` for that.
  * top minus bottom: alphalens-reloaded 0.5's ``compute_mean_returns_spread`` on the per-date
    quantile means (the period's return, not its per-day rate), averaged over dates.
  * Pearson IC / ICIR: Qlib's ``calc_ic`` (``Series.corr`` per date, ICIR = mean / std) on
    alphalens' clean data, with returns demeaned by group when ``group_adjust``, as our IC.
Tolerance: 1e-9 relative, with a 1e-12 absolute floor for values that are (near) zero.
"""
from __future__ import annotations

import io
import contextlib

import numpy as np
import pandas as pd
import pytest

from tests.references import require_reference
from utils.engine.factors import BinningFailed, MaxLossExceeded, analyze_factor

alphalens = require_reference("alphalens")
from alphalens import performance as perf, plotting, utils as al_utils  # noqa: E402

# alphalens 0.5.1 calls APIs pandas 3.1 deprecates (dayofweek, inplace=); its noise, not ours
pytestmark = pytest.mark.filterwarnings("ignore::Warning:alphalens")

RTOL = 1e-9
ATOL = 1e-12
INFO_FIELDS = {"ic_mean": "IC Mean", "ic_std": "IC Std.", "risk_adjusted_ic": "Risk-Adjusted IC",
               "t_stat": "t-stat(IC)", "p_value": "p-value(IC)", "ic_skew": "IC Skew",
               "ic_kurtosis": "IC Kurtosis"}


# ----------------------------------------------------------------------------- data
def trading_dates(count: int, seed: int) -> pd.DatetimeIndex:
    """Business days with a few weekday holidays removed (alphalens infers them as holidays)."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2019-01-02", periods=count + 12)
    holidays = rng.choice(np.arange(5, count), size=12, replace=False)
    return days.delete(holidays)[:count]


def random_panel(seed: int, n_dates: int = 160, n_symbols: int = 36):
    """Random walk prices with NaN holes and a factor rounded to one decimal (many ties), NaNs,
    an infinity, a constant date and a date too thin to bin."""
    rng = np.random.default_rng(seed)
    prices = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_dates, n_symbols)), axis=0))
    prices[rng.random(prices.shape) < 0.03] = np.nan
    prices[:25, 2] = np.nan  # listed late
    factor = np.round(rng.normal(size=(n_dates, n_symbols)), 1)
    factor[rng.random(factor.shape) < 0.08] = np.nan
    factor[7, 4] = np.inf
    factor[11, :] = 0.5  # every value tied: qcut's edges are not unique, the date is dropped
    factor[12, 3:] = np.nan  # three values only
    factor[13, :20] = 0.0  # zero-heavy date
    return trading_dates(n_dates, seed), prices, factor


def real_like_universe(seed: int = 7, n_dates: int = 420, n_symbols: int = 24):
    """A deterministic stand-in for several tickers' daily closes: correlated sector moves,
    fat tails, late listings, trading halts (gaps), one delisting; the factor is a 20-day
    momentum with its NaN warm-up, and sectors as groups."""
    rng = np.random.default_rng(seed)
    sectors = np.arange(n_symbols) % 4
    market = rng.standard_t(4, n_dates) * 0.009
    sector_moves = rng.standard_t(4, (n_dates, 4)) * 0.006
    idio = rng.standard_t(3, (n_dates, n_symbols)) * 0.012
    log_returns = market[:, None] * rng.uniform(0.6, 1.4, n_symbols) + sector_moves[:, sectors] + idio
    prices = np.round(rng.uniform(10, 300, n_symbols) * np.exp(np.cumsum(log_returns, axis=0)), 2)
    for symbol, listed in ((1, 60), (5, 150), (9, 300), (14, 30)):
        prices[:listed, symbol] = np.nan
    for symbol, start, length in ((3, 100, 7), (8, 210, 3), (17, 50, 12), (20, 333, 1)):
        prices[start:start + length, symbol] = np.nan
    prices[380:, 22] = np.nan  # delisted: alphalens forward-fills, so returns become 0
    filled = pd.DataFrame(prices).ffill().to_numpy()
    with np.errstate(invalid="ignore"):
        factor = filled / np.roll(filled, 20, axis=0) - 1
    factor[:20] = np.nan
    factor[np.isnan(prices)] = np.nan  # no factor for a halted name
    return trading_dates(n_dates, seed), prices, factor, sectors


# ----------------------------------------------------------------------------- alphalens
def to_alphalens(dates, prices, factor):
    symbols = [f"S{index:03d}" for index in range(prices.shape[1])]
    price_frame = pd.DataFrame(prices, index=dates, columns=symbols)
    index = pd.MultiIndex.from_product([dates, symbols], names=["date", "asset"])
    factor_series = pd.Series(factor.ravel(), index=index).dropna()
    return price_frame, factor_series, symbols


def alphalens_reference(dates, prices, factor, *, periods, quantiles=5, bins=None, max_loss=0.35,
                        filter_zscore=20, zero_aware=False, groups=None, group_adjust=False,
                        by_group=False, long_short=True, equal_weight=False):
    price_frame, factor_series, symbols = to_alphalens(dates, prices, factor)
    groupby = None if groups is None else dict(zip(symbols, (int(code) for code in groups)))
    with contextlib.redirect_stdout(io.StringIO()):
        data = al_utils.get_clean_factor_and_forward_returns(
            factor_series, price_frame, groupby=groupby, binning_by_group=by_group,
            quantiles=quantiles, bins=bins, periods=periods, filter_zscore=filter_zscore or None,
            max_loss=max_loss, zero_aware=zero_aware)
    columns = list(al_utils.get_forward_returns_columns(data.columns))
    ic = perf.factor_information_coefficient(data, group_adjust)
    table = plotting.plot_information_table(ic, return_df=True)
    mean_ret, std_err = perf.mean_return_by_quantile(data, demeaned=long_short,
                                                     group_adjust=group_adjust)
    by_date, _ = perf.mean_return_by_quantile(data, by_date=True, demeaned=long_short,
                                              group_adjust=group_adjust)
    spread, _ = perf.compute_mean_returns_spread(by_date, data["factor_quantile"].max(),
                                                 data["factor_quantile"].min())
    returns = perf.factor_returns(data, long_short, group_adjust, equal_weight)
    alpha_beta = perf.factor_alpha_beta(data, returns, long_short, group_adjust, equal_weight)
    ic_input = (al_utils.demean_forward_returns(data, [data.index.get_level_values("date"), "group"])
                if group_adjust else data)
    result = {"data": data, "n_factor": len(factor_series), "periods": {}}
    for column, period in zip(columns, sorted(periods)):
        pearson = ic_input.groupby(level="date").apply(lambda day: day["factor"].corr(day[column]))
        quantile_set = sorted(int(q) for q in data["factor_quantile"].unique())
        result["periods"][period] = {
            **{field: table.loc[column, name] for field, name in INFO_FIELDS.items()},
            "pearson_ic_mean": pearson.mean(), "pearson_icir": pearson.mean() / pearson.std(),
            "ann_alpha": alpha_beta.loc["Ann. alpha", column], "beta": alpha_beta.loc["beta", column],
            "factor_return_mean": returns[column].mean(),
            "mean_return_by_quantile": mean_ret[column], "std_error_by_quantile": std_err[column],
            "top_minus_bottom": spread[column].mean(),
            "mean_turnover_by_quantile": {
                q: perf.quantile_turnover(data["factor_quantile"], q, period).mean()
                for q in quantile_set},
            "rank_autocorrelation": perf.factor_rank_autocorrelation(data, period).mean(),
            "ic": ic[column], "pearson_ic": pearson,
            "factor_returns": returns[column],
            "cumulative_returns": perf.factor_cumulative_returns(data, column, long_short,
                                                                 group_adjust, equal_weight),
        }
    if by_group:
        result["groups"] = alphalens_by_group(data, columns, sorted(periods), long_short, group_adjust)
    return result


def alphalens_by_group(data, columns, periods, long_short, group_adjust):
    """Per group code and period: alphalens' by_group IC series, its information table, the mean
    IC per group and mean returns (with standard errors) by quantile per group."""
    ic = perf.factor_information_coefficient(data, group_adjust, by_group=True)
    mean_ic = perf.mean_information_coefficient(data, group_adjust, by_group=True)
    mean_ret, std_err = perf.mean_return_by_quantile(data, by_group=True, demeaned=long_short,
                                                     group_adjust=group_adjust)
    groups = {}
    for group in sorted(data["group"].unique()):
        group_ic = ic.xs(group, level="group")
        table = plotting.plot_information_table(group_ic, return_df=True)
        groups[int(group)] = {period: {
            **{field: table.loc[column, name] for field, name in INFO_FIELDS.items()},
            "mean_information_coefficient": mean_ic.loc[group, column], "ic": group_ic[column],
            "mean_return_by_quantile": mean_ret.xs(group, level="group")[column],
            "std_error_by_quantile": std_err.xs(group, level="group")[column],
        } for column, period in zip(columns, periods)}
    return groups


# ----------------------------------------------------------------------------- comparison
def assert_close(actual, expected, what):
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{what}: NaN positions")
    finite = ~np.isnan(expected)
    error = np.abs(actual[finite] - expected[finite])
    bound = RTOL * np.abs(expected[finite]) + ATOL
    assert np.all(error <= bound), f"{what}: worst error {error.max()} at {np.argmax(error - bound)}"


def by_quantile(series_or_dict, n_labels):
    values = dict(series_or_dict.items()) if not isinstance(series_or_dict, dict) else series_or_dict
    return np.array([values.get(q, np.nan) for q in range(1, n_labels + 1)], dtype=float)


def on_rows(series, dates):
    """Place an alphalens date-indexed series on our rows (NaN where it has no value)."""
    rows = np.full(len(dates), np.nan)
    positions = dates.get_indexer(series.index)
    assert (positions >= 0).all()
    rows[positions] = series.to_numpy(dtype=float)
    return rows


def compare(dates, prices, factor, **options):
    periods = options.pop("periods")
    ours = analyze_factor(prices, factor, periods=periods, **options)
    reference = alphalens_reference(dates, prices, factor, periods=periods, **options)
    data = reference["data"]
    assert ours.loss.factor_values == reference["n_factor"]
    assert ours.loss.kept == len(data)
    assert ours.loss_fraction == pytest.approx(1 - len(data) / reference["n_factor"], abs=1e-15)
    # the same cells in the same quantiles
    rows = dates.get_indexer(data.index.get_level_values("date"))
    cols = data.index.get_level_values("asset").str[1:].astype(int)
    expected_labels = np.zeros(factor.shape, dtype=int)
    expected_labels[rows, cols] = data["factor_quantile"].astype(int)
    np.testing.assert_array_equal(ours.quantile_labels, expected_labels)
    for period in periods:
        got, want = ours.period(period), reference["periods"][period]
        for field in (*INFO_FIELDS, "pearson_ic_mean", "pearson_icir", "ann_alpha", "beta",
                      "factor_return_mean", "top_minus_bottom", "rank_autocorrelation"):
            assert_close(getattr(got, field), want[field], f"{period}: {field}")
        for field in ("mean_return_by_quantile", "std_error_by_quantile", "mean_turnover_by_quantile"):
            assert_close(getattr(got, field), by_quantile(want[field], ours.n_quantiles),
                         f"{period}: {field}")
        for field in ("ic", "pearson_ic", "factor_returns"):
            assert_close(getattr(got, field), on_rows(want[field], dates), f"{period}: {field}")
        curve = want["cumulative_returns"]
        assert_close(got.cumulative_returns[dates.get_indexer(curve.index)], curve.to_numpy(),
                     f"{period}: cumulative_returns")
    if options.get("by_group"):
        compare_groups(ours, reference["groups"], periods, dates)
    else:
        assert ours.group_stats == ()
    return ours


def compare_groups(ours, reference, periods, dates):
    """Every per-group field against alphalens' by_group numbers (the same groups, by code)."""
    assert [stats.group for stats in ours.group_stats] == sorted(reference)
    for group, by_period in reference.items():
        mine = ours.group(group)
        assert [stats.period for stats in mine.periods] == sorted(periods)
        for period in periods:
            got, want = mine.period(period), by_period[period]
            what = f"group {group}, {period}"
            for field in INFO_FIELDS:
                assert_close(getattr(got, field), want[field], f"{what}: {field}")
            assert_close(got.ic_mean, want["mean_information_coefficient"], f"{what}: mean IC")
            assert_close(got.ic, on_rows(want["ic"], dates), f"{what}: ic")
            for field in ("mean_return_by_quantile", "std_error_by_quantile"):
                assert_close(getattr(got, field), by_quantile(want[field], ours.n_quantiles),
                             f"{what}: {field}")


# ----------------------------------------------------------------------------- tests
RANDOM_CASES = {
    "quantiles5": dict(periods=(1, 5, 10)),
    "quantiles4_long_only": dict(periods=(1, 3), quantiles=4, long_short=False),
    "quantiles10": dict(periods=(2, 5), quantiles=10, max_loss=0.6),
    "quantile_fractions": dict(periods=(1, 5), quantiles=[0, 0.1, 0.5, 0.9, 1.0]),
    "bins5": dict(periods=(1, 5), quantiles=None, bins=5),
    "bin_edges": dict(periods=(1, 4), quantiles=None, bins=[-2.0, -0.5, 0.0, 0.5, 2.0],
                      max_loss=0.5),
    "zero_aware_quantiles": dict(periods=(1, 5), quantiles=4, zero_aware=True),
    "zero_aware_bins": dict(periods=(1, 5), quantiles=None, bins=6, zero_aware=True),
    "equal_weight": dict(periods=(1, 5), equal_weight=True),
    "equal_weight_long_only": dict(periods=(1, 5), equal_weight=True, long_short=False),
    "zscore_3": dict(periods=(1, 5), filter_zscore=3),
    "zscore_off": dict(periods=(1, 5), filter_zscore=0),
}


@pytest.mark.parametrize("case", sorted(RANDOM_CASES))
@pytest.mark.parametrize("seed", [3, 11])
def test_random_panels_match_alphalens(case, seed):
    dates, prices, factor = random_panel(seed)
    compare(dates, prices, factor, **dict(RANDOM_CASES[case]))


GROUP_CASES = {
    "group_adjust": dict(group_adjust=True),
    "by_group": dict(by_group=True, quantiles=3),
    "group_adjust_by_group": dict(group_adjust=True, by_group=True, quantiles=3),
    "group_neutral_equal_weight": dict(group_adjust=True, equal_weight=True),
    "group_adjust_long_only": dict(group_adjust=True, long_short=False),
}


@pytest.mark.parametrize("case", sorted(GROUP_CASES))
def test_groups_match_alphalens(case):
    dates, prices, factor = random_panel(5)
    groups = np.arange(prices.shape[1]) % 3
    compare(dates, prices, factor, periods=(1, 5), groups=groups, max_loss=0.5,
            **GROUP_CASES[case])


BY_GROUP_CASES = {
    "long_short": dict(),
    "long_only": dict(long_short=False),
    "group_adjust": dict(group_adjust=True),
    "group_adjust_long_only": dict(group_adjust=True, long_short=False),
    "quantiles2_equal_weight": dict(quantiles=2, group_adjust=True, equal_weight=True),
    "bins4": dict(quantiles=None, bins=4),  # a one-value segment can be binned: its IC is NaN
}
# four groups of 3, 6, 12 and 15 symbols (the small one often too thin to bin), and three of 12
UNEVEN_GROUPS = np.repeat([2, 0, 3, 1], [3, 6, 12, 15])
GROUPINGS = {"uneven4": UNEVEN_GROUPS, "even3": np.arange(36) % 3}


@pytest.mark.parametrize("grouping", sorted(GROUPINGS))
@pytest.mark.parametrize("case", sorted(BY_GROUP_CASES))
@pytest.mark.parametrize("seed", [5, 17])
def test_by_group_statistics_match_alphalens(case, grouping, seed):
    """Per-group IC, information table and mean returns by quantile (alphalens' by_group=True)."""
    dates, prices, factor = random_panel(seed)
    options = {**dict(periods=(1, 5), quantiles=3, max_loss=0.6, by_group=True,
                      groups=GROUPINGS[grouping]), **BY_GROUP_CASES[case]}
    ours = compare(dates, prices, factor, **options)
    assert len(ours.group_stats) == np.unique(GROUPINGS[grouping]).size


REAL_CASES = {
    "quantiles5": dict(periods=(1, 5, 10)),
    "quantiles10_long_only": dict(periods=(1, 5, 10), quantiles=10, long_short=False),
    "bins6": dict(periods=(1, 21), quantiles=None, bins=6),
    "zero_aware": dict(periods=(1, 5), quantiles=6, zero_aware=True),
    "sectors": dict(periods=(1, 5, 10), group_adjust=True, by_group=True, quantiles=3),
}


@pytest.mark.parametrize("case", sorted(REAL_CASES))
def test_real_like_universe_matches_alphalens(case):
    dates, prices, factor, sectors = real_like_universe()
    options = dict(REAL_CASES[case])
    if options.get("group_adjust") or options.get("by_group"):
        options["groups"] = sectors
    compare(dates, prices, factor, **options)


def test_max_loss_exceeded_says_what_was_dropped():
    dates, prices, factor = random_panel(3)
    coarse = np.round(factor)  # a handful of distinct values: many dates cannot be cut in 5
    with pytest.raises(MaxLossExceeded) as ours:
        analyze_factor(prices, coarse, periods=(1, 5, 10))
    with pytest.raises(al_utils.MaxLossExceededError) as theirs:
        alphalens_reference(dates, prices, coarse, periods=(1, 5, 10))
    message = str(ours.value)
    assert message.startswith(str(theirs.value))  # alphalens' own sentence first
    loss = ours.value.args[0]
    assert "in binning phase" in loss and "whose quantile bin edges were not unique" in loss
    assert "rank_ties='first'" in message and "without a forward return" in message
    # the counts add up to what was dropped
    result = analyze_factor(prices, coarse, periods=(1, 5, 10), max_loss=1.0)
    drop = result.loss
    assert (drop.non_finite_factor + drop.missing_forward_returns + drop.zscore_outliers
            + drop.binning + drop.kept) == drop.factor_values
    assert drop.non_finite_factor == 1 and drop.failed_segments > 0


def test_max_loss_zero_raises_on_non_unique_edges_like_alphalens():
    dates, prices, factor = random_panel(3)
    with pytest.raises(BinningFailed, match="Bin edges must be unique"):
        analyze_factor(prices, factor, periods=(1,), max_loss=0)
    with pytest.raises(ValueError, match="Bin edges must be unique"):
        alphalens_reference(dates, prices, factor, periods=(1,), max_loss=0)


def test_rank_ties_first_bins_first_ranks_and_keeps_every_date():
    dates, prices, factor = random_panel(3)
    result = analyze_factor(prices, factor, periods=(1,), rank_ties="first", max_loss=0.5)
    default = analyze_factor(prices, factor, periods=(1,), max_loss=0.5)
    assert result.loss.failed_segments == 0 < default.loss.failed_segments
    for row in range(factor.shape[0]):
        cells = result.quantile_labels[row] > 0
        if not cells.any():
            continue
        values = pd.Series(factor[row, cells])
        expected = pd.qcut(values.rank(method="first"), 5, labels=False) + 1
        np.testing.assert_array_equal(result.quantile_labels[row, cells], expected.to_numpy())
