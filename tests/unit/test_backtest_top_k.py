"""``top_k``: Qlib's TopkDropout driven by a factor expression, against a reimplementation of Qlib's
own decision rule in pandas, on random panels with NaNs (late listings, gaps) and many ties."""
import numpy as np
import pandas as pd
import pytest

from utils.engine.backtest import validate_strategy_config
from utils.engine.backtest.config import target_positions, warmup_bars
from utils.engine.backtest.rebalance import simulate_rebalancing
from utils.engine.backtest.runner import simulate_panels
from utils.engine.backtest.simulate import trade_pnl
from utils.engine.backtest.strategies import topk_dropout
from utils.engine.backtest.sweep import sweep_panels
from utils.engine.factors.expressions import evaluate_factor

CAPITAL = 1_000_000.0


def qlib_topk_dropout(pred_score: pd.Series, current_stock_list: list[str], topk: int, n_drop: int) -> list[str]:
    """Held names after one ``TopkDropoutStrategy.generate_trade_decision`` of Qlib
    (qlib/contrib/strategy/signal_strategy.py, method_sell="bottom", method_buy="top",
    only_tradable=False, every order filled), transcribed line by line with two choices of ours:
    NaN scores are dropped (not eligible to buy; a held name without a score ranks last through
    ``reindex``), and sorts are stable (ties rank by symbol name; Qlib's default quicksort leaves
    them arbitrary). Qlib's ``get_last_n(comb, 0)`` is ``list(l)[-0:]``, the whole list, which would
    sell every holding with n_drop = 0; we take none."""
    pred_score = pred_score.dropna()
    last = pred_score.reindex(current_stock_list).sort_values(ascending=False, kind="stable").index
    today = list(pred_score[~pred_score.index.isin(last)].sort_values(ascending=False, kind="stable").index)
    today = today[:n_drop + topk - len(last)]
    comb = pred_score.reindex(last.union(pd.Index(today, dtype=object))).sort_values(
        ascending=False, kind="stable").index
    bottom = list(comb)[-n_drop:] if n_drop else []
    sell = last[last.isin(bottom)]
    buy = today[:len(sell) + topk - len(last)]
    return sorted((set(current_stock_list) - set(sell)) | set(buy))


def reference_held(score: np.ndarray, names: list[str], start: int, k: int, n_drop: int, rebalance: int):
    """Held names on each rebalance row (rows without any score are skipped: Qlib's no signal)."""
    held, out = [], {}
    for row in range(start, score.shape[0], rebalance):
        series = pd.Series(score[row], index=names)
        if series.notna().any():
            held = qlib_topk_dropout(series, held, k, n_drop)
            out[row] = held
    return out


def random_bars(seed: int, bars: int = 160, symbols: int = 30):
    rng = np.random.default_rng(seed)
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.02, (bars, symbols)), axis=0)) * rng.uniform(0.5, 3, symbols)
    close = np.round(close, 1)  # coarse prices: many equal returns, so ties in the factor
    for column in range(0, symbols, 4):  # late listings
        close[:rng.integers(1, bars // 2), column] = np.nan
    open_ = np.where(np.isnan(close), np.nan, np.round(close * np.exp(rng.normal(0, 0.01, close.shape)), 1))
    return {"open": open_, "high": np.fmax(open_, close), "low": np.fmin(open_, close), "close": close,
            "volume": np.where(np.isnan(close), 0.0, rng.integers(1, 5, close.shape).astype(float))}


def held_rows(weights: np.ndarray, names: list[str]) -> dict[int, list[str]]:
    return {row: sorted(names[i] for i in np.flatnonzero(weights[row] > 0))
            for row in range(weights.shape[0]) if np.isfinite(weights[row]).any()}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k, n_drop", [(1, 1), (5, 0), (5, 2), (8, 8), (12, 3)])
def test_decision_rule_matches_qlib_on_random_scores(seed, k, n_drop):
    rng = np.random.default_rng(seed * 100 + k)
    names = [f"S{i:03d}" for i in range(25)]
    score = rng.integers(0, 6, (60, 25)).astype(float)  # six values over 25 names: ties everywhere
    score[rng.random(score.shape) < 0.25] = np.nan
    score[10] = np.nan  # a row without any score
    expected = reference_held(score, names, 0, k, n_drop, 1)
    held = np.zeros(25, dtype=bool)
    for row in range(60):
        if not np.isfinite(score[row]).any():
            assert row not in expected
            continue
        before = held
        held = topk_dropout(score[row], held, k, n_drop)
        assert sorted(names[i] for i in np.flatnonzero(held)) == expected[row], row
        assert held.sum() <= k and (before & ~held).sum() <= n_drop


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("factor, k, n_drop, rebalance", [
    ("sign(delta(close, 3))", 6, 2, 1),                                   # three values: ties
    ("ts_mean(close, 5) / close - 1", 10, 3, 5),
    ("cs_rank(delta(close, 1) / ref(close, 1))", 4, 4, 2),
    ("ts_corr(close, volume, 10)", 7, 1, 3),                              # NaN where volume is flat
])
def test_held_set_on_every_rebalance_matches_qlib(seed, factor, k, n_drop, rebalance):
    bars = random_bars(seed)
    names = [f"S{i:03d}" for i in range(bars["close"].shape[1])]
    spec = validate_strategy_config({"strategy_type": "top_k", "factor": factor, "k": k, "n_drop": n_drop,
                                     "rebalance": rebalance}, len(names))
    start = warmup_bars(spec) + 7
    weights = target_positions(np, spec, bars, start)
    score = evaluate_factor(factor, bars)
    score[np.isnan(bars["close"])] = np.nan
    expected = reference_held(score, names, start, k, n_drop, rebalance)
    got = held_rows(weights, names)
    assert got == expected and len(got) > 10
    assert np.all(np.isnan(weights[:start]))
    rows = sorted(got)
    assert all(b - a >= rebalance and (b - a) % rebalance == 0 for a, b in zip(rows, rows[1:]))
    for a, b in zip(rows, rows[1:]):  # at most n_drop names leave per rebalance
        assert len(set(got[a]) - set(got[b])) <= n_drop
    for row in rows:  # equal weights of 1/k, zero elsewhere
        assert set(np.unique(weights[row])) <= {0.0, 1.0 / k}


def test_first_rebalance_buys_the_k_best_and_n_drop_zero_never_sells():
    score = np.array([[3.0, 1.0, 2.0, np.nan, 5.0], [9.0, 9.0, 9.0, 9.0, 0.0]])
    held = topk_dropout(score[0], np.zeros(5, dtype=bool), 2, 0)
    assert held.tolist() == [True, False, False, False, True]
    assert topk_dropout(score[1], held, 2, 0).tolist() == held.tolist()
    # n_drop = 1: the worst held name goes, the best candidate (lowest index on a tie) comes in
    assert topk_dropout(score[1], held, 2, 1).tolist() == [True, True, False, False, False]


def test_equal_weights_and_fills_of_the_rebalancing_engine():
    bars = random_bars(3)
    spec = validate_strategy_config({"strategy_type": "top_k", "factor": "ts_mean(close, 5) / close", "k": 5,
                                     "n_drop": 2, "rebalance": 3, "fill": "close"})
    start = warmup_bars(spec)
    output = simulate_panels(spec, bars, start, CAPITAL, 0.0)
    weights = target_positions(np, spec, bars, start)
    close = bars["close"]
    for row in np.flatnonzero(np.isfinite(weights).any(axis=1)):
        held = weights[row] > 0
        value = output.positions[row - start] * np.nan_to_num(close[row])
        assert held.sum() == 5
        np.testing.assert_allclose(value[held] / output.equity[row - start], 0.2, rtol=1e-12)
        assert np.all(value[~held] == 0)
    assert len(output.trade_table) > 20


def reference_costs(close, weights, start, capital, rate, slippage):
    """Fractional fills at the rebalance bar's close: every held name to weight x equity, sells
    before buys, buys capped by cash; fees = rate x fill value; fills moved by slippage."""
    def worth(cash, shares, price):  # summed in symbol order, as the engine does: equal-weight buys
        for symbol in np.flatnonzero(shares):  # tie on value, and rounding decides which one cash cuts
            cash += shares[symbol] * price[symbol]
        return cash

    cash, shares, curve = capital, np.zeros(close.shape[1]), []
    for row in range(start, close.shape[0]):
        price = close[row]
        if np.isfinite(weights[row]).any():
            value = worth(cash, shares, price)
            target = np.where(np.isfinite(price), np.nan_to_num(weights[row]) * value / price, shares)
            delta = target - shares
            for symbol in np.argsort(np.nan_to_num(delta * price), kind="mergesort"):
                if delta[symbol] == 0:
                    continue
                fill = price[symbol] * (1 + slippage if delta[symbol] > 0 else 1 - slippage)
                size = delta[symbol] if delta[symbol] < 0 else min(delta[symbol], cash / (1 + rate) / fill)
                cash -= size * fill + abs(size) * fill * rate
                shares[symbol] += size
        curve.append(worth(cash, shares, price))
    return np.array(curve)


def test_commission_and_slippage_are_charged_as_the_rebalancing_engine_does():
    bars = random_bars(5)
    config = {"strategy_type": "top_k", "factor": "-delta(close, 2) / close", "k": 6, "n_drop": 2, "fill": "close"}
    spec = validate_strategy_config({**config, "slippage_bps": 5})
    start = warmup_bars(spec)
    weights = target_positions(np, spec, bars, start)
    costly = simulate_panels(spec, bars, start, CAPITAL, 0.002)
    free = simulate_panels(validate_strategy_config(config), bars, start, CAPITAL, 0.0)
    expected = reference_costs(bars["close"], weights, start, CAPITAL, 0.002, 5e-4)
    np.testing.assert_allclose(costly.equity, expected, rtol=1e-9)
    assert costly.equity[-1] < free.equity[-1]
    assert trade_pnl(costly.trade_table)[2].sum() > 0
    # next_open (whole shares at the next open) is the same engine: top_k's weights into simulate_rebalancing
    spec_open = validate_strategy_config({**config, "fill": "next_open", "commission_min": 5})
    direct = simulate_rebalancing(bars["open"], bars["close"], target_positions(np, spec_open, bars, start),
                                  CAPITAL, spec_open.simulation_config(0.001), start)
    via = simulate_panels(spec_open, bars, start, CAPITAL, 0.001)
    np.testing.assert_array_equal(via.equity, direct.equity)
    assert np.all(trade_pnl(via.trade_table)[2] >= 5)


def test_sweep_over_k_n_drop_rebalance_rows_equal_single_runs():
    bars = random_bars(7)
    base = {"strategy_type": "top_k", "factor": "ts_mean(close, 10) / close - 1"}
    spec = validate_strategy_config({**base, "param_grid": {"k": [3, 6], "n_drop": [0, 1, 4], "rebalance": [1, 5]}},
                                    30)
    start = warmup_bars(spec)
    result = sweep_panels(spec, bars, start, CAPITAL, 0.001)
    assert result.combinations == 10  # (k=3, n_drop=4) is skipped: n_drop > k
    for row in result.table:
        single = validate_strategy_config({**base, **row["params"]})
        metrics = simulate_panels(single, bars, start, CAPITAL, 0.001).metrics(252, CAPITAL)
        assert row["metrics"] == pytest.approx(metrics, rel=1e-12, nan_ok=True)


@pytest.mark.parametrize("config, symbols, message", [
    ({"factor": "ts_mean(close, 5) / closee"}, None,
     "strategy_config.factor, column 21: unknown name 'closee' (did you mean 'close'?)"),
    ({"factor": "close > open"}, None, "strategy_config.factor, column 1: a factor must be a number"),
    ({"factor": ""}, None, "strategy_config.factor must be a non-empty factor expression"),
    ({}, None, "strategy_config.factor is required for top_k"),
    ({"factor": "close", "k": 0}, None, "strategy_config.k must be an integer in [1,"),
    ({"factor": "close", "k": 4, "n_drop": 1}, 3, "strategy_config.k must be at most the number of symbols in the request (3), got 4"),
    ({"factor": "close", "k": 2, "param_grid": {"k": [2, 5]}}, 3,
     "strategy_config.param_grid.k must be at most the number of symbols in the request (3), got 5"),
    ({"factor": "close", "k": 3, "n_drop": 4}, None, "strategy_config.n_drop must be at most strategy_config.k"),
    ({"factor": "close", "n_drop": -1}, None, "strategy_config.n_drop must be an integer in [0,"),
    ({"factor": "close", "rebalance": 0}, None, "strategy_config.rebalance must be an integer in [1,"),
    ({"factor": "close", "direction": "long_short"}, None, "strategy_config.direction: top_k is long-only"),
    ({"factor": "close", "stop_loss": 0.1}, None, "top_k rebalances target weights"),
    ({"factor": "close", "param_grid": {"factor": ["close", "open"]}}, None,
     "strategy_config.param_grid.factor is not a parameter that can be swept; parameters: k, n_drop, rebalance"),
])
def test_validation_errors_name_the_field(config, symbols, message):
    with pytest.raises(ValueError) as caught:
        validate_strategy_config({"strategy_type": "top_k", **config}, symbols)
    assert message in str(caught.value)


def test_defaults_and_warmup_is_the_expression_lookback():
    spec = validate_strategy_config({"strategy_type": "top_k", "factor": "ts_mean(delta(close, 5), 20)"}, 60)
    assert spec.normalised() == {"strategy_type": "top_k", "factor": "ts_mean(delta(close, 5), 20)", "k": 50,
                                 "n_drop": 5, "rebalance": 1, "fill": "next_open", "direction": "long_only",
                                 "sizing": "all_in"}
    assert warmup_bars(spec) == 24 and spec.is_portfolio
