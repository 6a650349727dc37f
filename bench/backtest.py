"""Backtest benchmark: the numba backtest engine against vectorbt, on synthetic GBM OHLC panels.

1. One strategy (sma_crossover fast 10 / slow 30, ``fill: close``, commission 0.1 %) on 100
   symbols x 1000 daily bars. Ours: the engine path of ``run_backtest`` without the alignment step
   (``target_positions`` -> ``simulate_portfolio`` -> ``performance_metrics``). Anchor: vectorbt
   ``Portfolio.from_signals`` on the very same boolean entries (exits = not entries), one sleeve
   of capital/100 per symbol grouped into one portfolio (the sum of sleeves, as ours), and the
   same metrics. Timed twice: signals given (simulation + metrics), and signals included (ours
   ``target_positions``, vectorbt ``vbt.MA.run`` twice + ``ma_above``). Best of ``REPEATS``
   after a warm-up (numba compilation excluded for both).
2. Sweep: ``sweep_panels`` over a 53 x 30 (fast x slow) grid (1510 valid combinations) on 100
   symbols x 2520 bars, one run after a small warm-up sweep. vectorbt cannot hold 1510 x 100
   columns at once, so it runs a 30-combination subset (3000 columns) in one ``from_signals``
   call grouped per combination, and cells/s are compared.
"""
from __future__ import annotations

import math
import os
import platform
import resource
import time
import warnings

import numpy as np

from bench import Section, best_of
from utils.tasks.backtest import kernel_threads

QUICK = os.environ.get("BENCH_QUICK") == "1"  # smoke run with small sizes (numbers meaningless)
SINGLE_T, SINGLE_N = (250, 20) if QUICK else (1000, 100)
SWEEP_T, SWEEP_N = (300, 20) if QUICK else (2520, 100)
FAST_GRID = list(range(2, 55))
SLOW_GRID = list(range(20, 320, 10))
VBT_SUBSET = 30
REPEATS = 5 if QUICK else 15
VBT_SWEEP_REPEATS = 1 if QUICK else 2
CAPITAL = 1_000_000.0
COMMISSION = 0.001
SEED_SINGLE, SEED_SWEEP = 20260301, 20260302

TARGET_SINGLE_SPEEDUP = 6.0
TARGET_SWEEP_CELLS = 2.5e7
TARGET_SWEEP_SPEEDUP = 10.0

# entry "level" (held while fast > slow): the signal vectorbt's ``ma_above`` gives the anchor
SINGLE_CONFIG = {"strategy_type": "sma_crossover", "fast": 10, "slow": 30, "fill": "close", "entry": "level"}
SWEEP_CONFIG = {"strategy_type": "sma_crossover", "param_grid": {"fast": FAST_GRID, "slow": SLOW_GRID},
                "fill": "close", "entry": "level"}


# ------------------------------------------------------------------ data and helpers
def gbm_panels(bars: int, symbols: int, seed: int) -> dict[str, np.ndarray]:
    """(time x symbols) OHLCV: geometric Brownian motion closes (annual drift 2-12 %, volatility
    15-45 % per symbol), an opening gap off the previous close, high/low beyond open and close."""
    rng = np.random.default_rng(seed)
    dt = 1.0 / 252
    mu = rng.uniform(0.02, 0.12, symbols)
    sigma = rng.uniform(0.15, 0.45, symbols)
    steps = (mu - 0.5 * sigma ** 2) * dt + sigma * math.sqrt(dt) * rng.standard_normal((bars, symbols))
    close = 100.0 * np.exp(np.cumsum(steps, axis=0))
    previous = np.vstack([close[:1] * np.exp(-steps[:1]), close[:-1]])
    open_ = previous * np.exp(0.2 * sigma * math.sqrt(dt) * rng.standard_normal((bars, symbols)))
    reach = sigma * math.sqrt(dt) * 0.5
    high = np.maximum(open_, close) * np.exp(np.abs(reach * rng.standard_normal((bars, symbols))))
    low = np.minimum(open_, close) * np.exp(-np.abs(reach * rng.standard_normal((bars, symbols))))
    volume = rng.integers(10_000, 1_000_000, (bars, symbols)).astype(np.float64)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _best(fn, repeats: int = REPEATS) -> float:
    return best_of(repeats, fn)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak_increase(fn):
    """(result, seconds, peak RSS above the RSS at the start, in bytes) of one call."""
    import gc
    gc.collect()
    resettable = _reset_peak()
    before = _rss_bytes() if resettable else _peak_bytes()
    began = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - began
    return result, seconds, max(0, _peak_bytes() - before)


def _vbt():
    import vectorbt as vbt
    warnings.filterwarnings("ignore", module="vectorbt")
    vbt.settings.returns["year_freq"] = "252 days"  # annualise like ours (periods_per_year 252)
    return vbt


def _vbt_metrics(portfolio) -> dict[str, object]:
    """The metrics ours computes, from a (grouped) vectorbt portfolio."""
    closed = portfolio.trades.closed
    return {
        "total_return": portfolio.total_return(),
        "annualized_return": portfolio.annualized_return(),
        "annualized_volatility": portfolio.annualized_volatility(),
        "sharpe_ratio": portfolio.sharpe_ratio(),
        "sortino_ratio": portfolio.sortino_ratio(),
        "max_drawdown": portfolio.max_drawdown(),
        "calmar_ratio": portfolio.calmar_ratio(),
        "win_rate": closed.win_rate(),
        "profit_factor": closed.profit_factor(),
        "num_trades": closed.count(),
        "final_equity": portfolio.final_value(),
    }


# ------------------------------------------------------------------ 1. one strategy
def measure_single() -> dict:
    import pandas as pd
    from utils.engine.backtest.config import target_positions, validate_strategy_config
    from utils.engine.backtest.simulate import simulate_portfolio, trades_from_table
    from utils.engine.backtest.sweep import SleeveBatch
    from utils.engine.metrics import performance_metrics
    vbt = _vbt()

    panels = gbm_panels(SINGLE_T, SINGLE_N, SEED_SINGLE)
    spec = validate_strategy_config(SINGLE_CONFIG)
    config = spec.simulation_config(COMMISSION)
    open_, high, low, close = (panels[f] for f in ("open", "high", "low", "close"))
    index = pd.date_range("2000-01-03", periods=SINGLE_T, freq="B")
    close_frame = pd.DataFrame(close, index=index)  # vectorbt's input format, built outside the timing
    fast, slow = spec.param_values["fast"], spec.param_values["slow"]

    def ours_run(entries):
        output = simulate_portfolio(open_, close, entries, CAPITAL, high=high, low=low, config=config)
        return output, performance_metrics(output.equity, output.closed_pnl, spec.periods_per_year,
                                           output.exposure, CAPITAL)

    def ours_full():
        return ours_run(target_positions(np, spec, panels) > 0)

    def vbt_run(entries):
        portfolio = vbt.Portfolio.from_signals(close_frame, entries, ~entries, init_cash=CAPITAL / SINGLE_N,
                                               fees=COMMISSION, freq="1D", group_by=True)
        return portfolio, _vbt_metrics(portfolio)

    def vbt_signals():
        fast_ma = vbt.MA.run(close_frame, fast)
        slow_ma = vbt.MA.run(close_frame, slow)
        return fast_ma.ma_above(slow_ma).to_numpy()

    def vbt_full():
        return vbt_run(vbt_signals())

    entries = target_positions(np, spec, panels) > 0  # the same boolean array goes to both
    began = time.perf_counter()
    output, ours_metrics = ours_run(entries)
    compile_ours = time.perf_counter() - began
    began = time.perf_counter()
    portfolio, vbt_metrics = vbt_run(entries)
    vbt_full()
    compile_vbt = time.perf_counter() - began
    ours_full()
    signals_equal = bool(np.array_equal(vbt_signals(), entries))

    res = {"compile_ours": compile_ours, "compile_vbt": compile_vbt, "signals_equal": signals_equal}
    # interleave the timing of the two so that load from other jobs on the machine hits both
    res["ours_given"] = _best(lambda: ours_run(entries))
    res["vbt_given"] = _best(lambda: vbt_run(entries))
    res["ours_full"] = _best(ours_full)
    res["vbt_full"] = _best(vbt_full)
    res["ours_given"] = min(res["ours_given"], _best(lambda: ours_run(entries)))
    res["vbt_given"] = min(res["vbt_given"], _best(lambda: vbt_run(entries)))

    # breakdown of ours
    res["ours_signals"] = _best(lambda: target_positions(np, spec, panels))
    res["ours_simulate"] = _best(lambda: simulate_portfolio(open_, close, entries, CAPITAL, high=high, low=low,
                                                            config=config))
    res["ours_trade_objects"] = _best(lambda: trades_from_table(output.trade_table))
    res["ours_metrics"] = _best(lambda: performance_metrics(output.equity, output.closed_pnl, spec.periods_per_year,
                                                            output.exposure, CAPITAL))
    batch = SleeveBatch(spec, panels, 0)
    target = entries.astype(np.float64)

    def batch_run():
        return batch.run(spec, target, CAPITAL, COMMISSION).metrics(spec.periods_per_year, CAPITAL)

    batch_metrics = batch_run()
    res["ours_batch"] = _best(batch_run)
    with kernel_threads(1):
        res["ours_batch_1t"] = _best(batch_run)
    # breakdown of vectorbt
    res["vbt_signals"] = _best(vbt_signals)
    res["vbt_simulate"] = _best(lambda: vbt.Portfolio.from_signals(
        close_frame, entries, ~entries, init_cash=CAPITAL / SINGLE_N, fees=COMMISSION, freq="1D", group_by=True))
    res["vbt_metrics"] = _best(lambda: _vbt_metrics(vbt.Portfolio.from_signals(
        close_frame, entries, ~entries, init_cash=CAPITAL / SINGLE_N, fees=COMMISSION, freq="1D",
        group_by=True))) - res["vbt_simulate"]

    # the two agree (the parity tests check this on real data; here a sanity check of the bench)
    value = portfolio.value().to_numpy()
    res["equity_rel_diff"] = float(np.max(np.abs(value / output.equity - 1.0)))
    res["metric_rel_diff"] = {key: abs(float(vbt_metrics[key]) / ours_metrics[key] - 1.0)
                              if ours_metrics[key] else abs(float(vbt_metrics[key]))
                              for key in ("total_return", "sharpe_ratio", "max_drawdown", "num_trades",
                                          "win_rate", "profit_factor", "final_equity")}
    res["metric_rel_diff"]["max_drawdown"] = abs(-float(vbt_metrics["max_drawdown"]) /
                                                 ours_metrics["max_drawdown"] - 1.0)
    res["batch_rel_diff"] = abs(batch_metrics["sharpe_ratio"] / ours_metrics["sharpe_ratio"] - 1.0)
    res["trades"] = len(output.trades)
    res["closed"] = int(ours_metrics["num_trades"])
    for key, value in res.items():
        if isinstance(value, float) and key not in ("equity_rel_diff", "batch_rel_diff"):
            print(f"[bench:backtest] single {key}: {value * 1e3:.2f} ms", flush=True)
    return res


# ------------------------------------------------------------------ 2. sweep
def measure_sweep() -> dict:
    import pandas as pd
    from utils.engine.backtest.config import validate_strategy_config
    from utils.engine.backtest.sweep import sweep_panels
    vbt = _vbt()

    spec = validate_strategy_config(SWEEP_CONFIG)
    combinations = spec.combinations()
    panels = gbm_panels(SWEEP_T, SWEEP_N, SEED_SWEEP)

    warm_spec = validate_strategy_config({"strategy_type": "sma_crossover",
                                          "param_grid": {"fast": [2, 3], "slow": [20, 30]}, "fill": "close",
                                          "entry": "level"})
    began = time.perf_counter()
    sweep_panels(warm_spec, gbm_panels(400, 4, 1), 0, CAPITAL, COMMISSION)
    compile_s = time.perf_counter() - began

    print(f"[bench:backtest] sweep: {len(combinations)} combinations x {SWEEP_N} symbols x {SWEEP_T} bars ...",
          flush=True)
    result, wall, peak = _peak_increase(lambda: sweep_panels(spec, panels, 0, CAPITAL, COMMISSION))
    with kernel_threads(1):
        one_thread = sweep_panels(spec, panels, 0, CAPITAL, COMMISSION)
    print(f"[bench:backtest] sweep, 1 numba thread: {one_thread.seconds:.2f} s", flush=True)
    res = {"compile_s": compile_s, "seconds_1t": one_thread.seconds, "combinations": result.combinations,
           "grid_points": len(FAST_GRID) * len(SLOW_GRID),
           "cells": result.cells, "seconds": result.seconds, "wall": wall, "peak": peak,
           "best": result.best, "rows": len(result.table)}
    print(f"[bench:backtest] sweep: {result.seconds:.2f} s, {result.cells / result.seconds:,.0f} cells/s, "
          f"peak +{peak / 2**20:.0f} MiB", flush=True)

    # vectorbt on an evenly spaced subset of the same combinations
    step = max(1, len(combinations) // VBT_SUBSET)
    subset = [c.param_values for c in combinations[::step][:VBT_SUBSET]]
    index = pd.date_range("2000-01-03", periods=SWEEP_T, freq="B")
    close_frame = pd.DataFrame(panels["close"], index=index)
    windows = sorted({p["fast"] for p in subset} | {p["slow"] for p in subset})
    keys = pd.Index([f"{p['fast']}/{p['slow']}" for p in subset], name="combination")
    group = np.repeat(np.arange(len(subset)), SWEEP_N)

    def vbt_entries():
        ma = vbt.MA.run(close_frame, windows).ma.to_numpy().reshape(SWEEP_T, len(windows), SWEEP_N)
        at = {window: i for i, window in enumerate(windows)}
        fast = ma[:, [at[p["fast"]] for p in subset]]
        slow = ma[:, [at[p["slow"]] for p in subset]]
        return (fast > slow).reshape(SWEEP_T, len(subset) * SWEEP_N)  # NaN compares False, as ma_above

    def vbt_sweep(entries=None):
        if entries is None:
            entries = vbt_entries()
        columns = pd.MultiIndex.from_arrays([np.repeat(keys, SWEEP_N), np.tile(np.arange(SWEEP_N), len(subset))],
                                            names=["combination", "symbol"])
        prices = pd.DataFrame(np.tile(panels["close"], (1, len(subset))), index=index, columns=columns)
        portfolio = vbt.Portfolio.from_signals(prices, entries, ~entries, init_cash=CAPITAL / SWEEP_N,
                                               fees=COMMISSION, freq="1D", group_by=group)
        return {"total_return": portfolio.total_return().to_numpy(),
                "sharpe_ratio": portfolio.sharpe_ratio().to_numpy(),
                "max_drawdown": portfolio.max_drawdown().to_numpy()}

    # warm-up on a slice (compiles vectorbt's numba functions)
    vbt.Portfolio.from_signals(close_frame.iloc[:300, :4], vbt_entries()[:300, :4], ~vbt_entries()[:300, :4],
                               init_cash=1.0, fees=COMMISSION, freq="1D", group_by=True).sharpe_ratio()
    print(f"[bench:backtest] vectorbt: {len(subset)} combinations x {SWEEP_N} symbols in one call ...", flush=True)
    theirs, vbt_wall, vbt_peak = _peak_increase(vbt_sweep)
    for _ in range(VBT_SWEEP_REPEATS - 1):
        began = time.perf_counter()
        vbt_sweep()
        vbt_wall = min(vbt_wall, time.perf_counter() - began)
    entries = vbt_entries()
    vbt_sim = _best(lambda: vbt_sweep(entries), VBT_SWEEP_REPEATS)
    vbt_cells = len(subset) * SWEEP_N * SWEEP_T

    # agreement on the subset's rows present in our ranked table
    ours_rows = {(row["params"]["fast"], row["params"]["slow"]): row["metrics"] for row in result.table}
    diffs, sharpe_diffs, compared = [], [], 0
    for i, p in enumerate(subset):
        mine = ours_rows.get((p["fast"], p["slow"]))
        if mine is None:
            continue
        compared += 1
        diffs.append(abs(theirs["total_return"][i] - mine["total_return"]) / max(1e-12, abs(mine["total_return"])))
        sharpe_diffs.append(abs(theirs["sharpe_ratio"][i] - mine["sharpe_ratio"]) /
                            max(1e-12, abs(mine["sharpe_ratio"])))
    res.update(vbt_combinations=len(subset), vbt_cells=vbt_cells, vbt_seconds=vbt_wall, vbt_sim_seconds=vbt_sim,
               vbt_peak=vbt_peak, vbt_windows=len(windows), compared=compared,
               max_diff=max(diffs) if diffs else math.nan,
               max_sharpe_diff=max(sharpe_diffs) if sharpe_diffs else math.nan,
               subset_first=subset[0], subset_last=subset[-1])
    print(f"[bench:backtest] vectorbt: {vbt_wall:.2f} s ({vbt_cells / vbt_wall:,.0f} cells/s), "
          f"peak +{vbt_peak / 2**20:.0f} MiB", flush=True)
    return res


# ------------------------------------------------------------------ report
def _ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def render(single: dict, sweep: dict) -> str:
    import numba
    import pandas as pd
    import vectorbt as vbt
    given = single["vbt_given"] / single["ours_given"]
    full = single["vbt_full"] / single["ours_full"]
    ours_rate = sweep["cells"] / sweep["seconds"]
    vbt_rate = sweep["vbt_cells"] / sweep["vbt_seconds"]
    vbt_sim_rate = sweep["vbt_cells"] / sweep["vbt_sim_seconds"]
    per_column = sweep["vbt_peak"] / (sweep["vbt_combinations"] * SWEEP_N)
    full_columns = sweep["combinations"] * SWEEP_N
    diffs = single["metric_rel_diff"]
    threads = numba.get_num_threads()
    batch_best = min(single["ours_batch"], single["ours_batch_1t"])
    best = sweep["best"]
    lines = [
        "Command: `make bench` (this section alone: `.venv/bin/python -m bench backtest`). "
        f"Anchor: vectorbt {vbt.__version__} (`Portfolio.from_signals`, numba {numba.__version__}, pandas "
        f"{pd.__version__}), run in the same process on the same data right after ours; installed in "
        "the main `.venv` from requirements-test.txt (it is also the parity tests' reference). Ours: "
        f"the numba engine on the CPU, numpy {np.__version__}. Machine: the one in the header "
        f"({os.cpu_count()} CPUs, {platform.machine()}, shared with other jobs, so expect some noise). "
        "GPU: not lent in this session (everything below is CPU).",
        "",
        "Data: synthetic daily OHLCV panels, geometric Brownian motion per symbol (annual drift 2–12 %, "
        "volatility 15–45 %, fixed seeds), opening gaps off the previous close, high/low beyond open and "
        "close. Both engines trade `fill: close` (vectorbt's convention: the signal bar's close), "
        f"commission {COMMISSION * 100:g} % of traded value, all of the sleeve's equity per entry, long only, "
        f"initial capital {CAPITAL:,.0f} split into equal per-symbol sleeves (vectorbt: `init_cash` = "
        "capital / symbols per column, columns grouped into one portfolio without cash sharing — the "
        "same portfolio). tests/parity/test_backtest_parity.py checks that the two agree to 1e-9 on real data.",
        "",
        f"### One strategy: sma_crossover (fast 10, slow 30), {SINGLE_N} symbols × {SINGLE_T:,} bars "
        "(ms, lower is better)",
        "",
        "| Measured | ours ms | vectorbt ms | vectorbt/ours | ≥ 6× faster? |",
        "|---|---:|---:|---:|---|",
        f"| signals given (the same boolean entries to both): simulation + metrics | {_ms(single['ours_given'])} | "
        f"{_ms(single['vbt_given'])} | {given:.1f}× | {_yes(given >= TARGET_SINGLE_SPEEDUP)} |",
        f"| signals included: SMA(10), SMA(30), crossover level + simulation + metrics | "
        f"{_ms(single['ours_full'])} | {_ms(single['vbt_full'])} | {full:.1f}× | "
        f"{_yes(full >= TARGET_SINGLE_SPEEDUP)} |",
        "",
        f"Best of {REPEATS} (signals-given: of {2 * REPEATS}, in two interleaved rounds) after a warm-up; "
        f"first calls (numba compilation) took {single['compile_ours']:.1f} s for ours (loaded from numba's "
        f"on-disk cache where present) and {single['compile_vbt']:.1f} s for vectorbt. Ours: "
        "`simulate_portfolio(open, close, entries, capital, high=, low=, config=spec.simulation_config(0.001))` "
        "then `performance_metrics(equity, trades, 252, exposure, capital)` (13 metrics); signals included "
        "adds `target_positions(np, spec, panels)`. vectorbt: `Portfolio.from_signals(close_df, entries, "
        "~entries, init_cash=, fees=0.001, freq='1D', group_by=True)` then total return, annualized "
        "return/volatility, Sharpe, Sortino, max drawdown, Calmar, and win rate, profit factor and count "
        "of closed trades; signals included adds `vbt.MA.run(close_df, 10)`, `vbt.MA.run(close_df, 30)`, "
        f"`ma_above` (the same signals as ours: {'identical' if single['signals_equal'] else 'NOT identical'}). "
        "Not timed: building the panels and vectorbt's pandas DataFrame of closes (its input format); "
        "the run_backtest steps around the engine (aligning per-symbol bars on a calendar, ISO "
        "timestamps on the trade records, per-symbol summary).",
        "",
        "Where the time goes (ms, best of each alone):",
        "",
        "| Step | ours | vectorbt |",
        "|---|---:|---:|",
        f"| signals (two SMAs + crossover) | {_ms(single['ours_signals'])} | {_ms(single['vbt_signals'])} |",
        f"| simulation (`simulate_portfolio` / `from_signals`) | {_ms(single['ours_simulate'])} | "
        f"{_ms(single['vbt_simulate'])} |",
        f"| … of which ours builds the list of {single['trades']:,} `Trade` objects (`trades_from_table`) | "
        f"{_ms(single['ours_trade_objects'])} | — |",
        f"| metrics | {_ms(single['ours_metrics'])} | {_ms(single['vbt_metrics'])} |",
        f"| ours, sweep path: `SleeveBatch.run` (same simulation and metrics, from arrays, no `Trade` "
        f"objects; symbols in parallel, {threads} numba threads) | {_ms(single['ours_batch'])} | — |",
        f"| the same, `numba.set_num_threads(1)` | {_ms(single['ours_batch_1t'])} | — |",
        "",
        f"The 6× target: {'met' if given >= TARGET_SINGLE_SPEEDUP else 'missed'} with signals given "
        f"({given:.1f}×), {'met' if full >= TARGET_SINGLE_SPEEDUP else 'missed'} with signals included "
        f"({full:.1f}×). In ours, {single['ours_trade_objects'] / single['ours_given'] * 100:.0f} % of the "
        "signals-given time is `simulate_portfolio` turning the trade table into Python `Trade` objects "
        "(the API returns them; vectorbt keeps numpy records and builds no objects). The same simulation "
        f"and metrics without them (`SleeveBatch.run`, the faster of its two rows) take {_ms(batch_best)} ms, "
        f"{single['vbt_given'] / batch_best:.1f}× faster than vectorbt — an engine path "
        "that exists, but not the one `run_backtest` takes."
        + (" Parallel numba loops (`prange`) lose on this 2-core machine while other jobs use it: a "
           "thread that is descheduled holds up the end of every parallel loop (compare the two "
           "`SleeveBatch.run` rows)." if single["ours_batch_1t"] < 0.8 * single["ours_batch"] else ""),
        "",
        f"Agreement in this run: equity curves within {single['equity_rel_diff']:.1e} relative; "
        + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
        + " (relative; vectorbt annualised with `year_freq='252 days'`; its Sharpe counts one more bar "
        "return than ours, the first bar's against the initial cash, hence its small difference); the sweep path's Sharpe within "
        f"{single['batch_rel_diff']:.1e}. {single['closed']:,} closed trades (+ "
        f"{single['trades'] - single['closed']} open at the end).",
        "",
        f"### Sweep: sma_crossover fast {FAST_GRID[0]}–{FAST_GRID[-1]} × slow {SLOW_GRID[0]}–{SLOW_GRID[-1]} "
        f"step {SLOW_GRID[1] - SLOW_GRID[0]}, {SWEEP_N} symbols × {SWEEP_T:,} bars",
        "",
        "| Engine | combinations | cells | seconds | cells/s | peak RSS increase | target | met? |",
        "|---|---:|---:|---:|---:|---:|---|---|",
        f"| ours: `sweep_panels(spec, panels, 0, 1e6, 0.001)` | {sweep['combinations']:,} | {sweep['cells']:.3g} | "
        f"{sweep['seconds']:.2f} | {ours_rate:.3g} | {_mib(sweep['peak'])} | ≥ 2.5e7 cells/s | "
        f"{_yes(ours_rate >= TARGET_SWEEP_CELLS)} |",
        f"| ours, the same with `numba.set_num_threads(1)` | {sweep['combinations']:,} | {sweep['cells']:.3g} | "
        f"{sweep['seconds_1t']:.2f} | {sweep['cells'] / sweep['seconds_1t']:.3g} | — | — | — |",
        f"| vectorbt: {sweep['vbt_combinations']} of the combinations, one `from_signals` call "
        f"({sweep['vbt_combinations'] * SWEEP_N:,} columns), signals included | {sweep['vbt_combinations']} | "
        f"{sweep['vbt_cells']:.3g} | {sweep['vbt_seconds']:.2f} | {vbt_rate:.3g} | {_mib(sweep['vbt_peak'])} | — | — |",
        f"| vectorbt, signals given (tiling the closes into the {sweep['vbt_combinations'] * SWEEP_N:,}-column "
        f"frame, `from_signals`, metrics) | {sweep['vbt_combinations']} | "
        f"{sweep['vbt_cells']:.3g} | {sweep['vbt_sim_seconds']:.2f} | {vbt_sim_rate:.3g} | — | — | — |",
        "",
        f"Ours ({threads} numba threads) / vectorbt: **{ours_rate / vbt_rate:.1f}×** the cells/s of vectorbt end to end "
        f"(target ≥ 10×: {_yes(ours_rate / vbt_rate >= TARGET_SWEEP_SPEEDUP)}), "
        f"{ours_rate / vbt_sim_rate:.1f}× against vectorbt's simulation + metrics alone (the subset needs "
        f"{sweep['vbt_windows']} moving averages for {sweep['vbt_combinations']} combinations, the whole grid "
        f"{len(set(FAST_GRID) | set(SLOW_GRID))} for {sweep['combinations']:,}, so the end-to-end rate "
        "charges vectorbt relatively more for signals; the simulation-only rate is the conservative one).",
        "",
        f"Grid: {sweep['grid_points']:,} points, {sweep['combinations']:,} valid (fast < slow); a cell is one "
        "(combination, symbol, bar). Ours is one run with the default threads and one with a single thread "
        "(after a 4-combination warm-up sweep on small data: "
        f"{sweep['compile_s']:.1f} s) and includes everything `sweep_panels` does: the SMA panels (one per "
        "distinct window, shared across combinations), the targets (built inside the kernel from two SMA "
        "lines), the simulation of every sleeve (numba, whole combinations in parallel: "
        "`sweep_kernel.sweep_portfolios`), the 13 metrics + turnover per combination and the ranking (best: "
        f"fast {best['params']['fast']} / slow {best['params']['slow']}, Sharpe "
        f"{best['metrics']['sharpe_ratio']:.2f}). vectorbt cannot hold the whole grid: its peak here is "
        f"{_mib(sweep['vbt_peak'])} for {sweep['vbt_combinations'] * SWEEP_N:,} columns, about "
        f"{per_column / 2**10:,.0f} KiB per column, i.e. ~{per_column * full_columns / 2**30:,.0f} GiB (linear extrapolation) for all "
        f"{full_columns:,} at once (this machine has the RAM in the header); a user would chunk it, at the "
        f"cells/s above. Its subset is every {sweep['combinations'] // VBT_SUBSET}th combination in grid "
        f"order ({sweep['subset_first']['fast']}/{sweep['subset_first']['slow']} … "
        f"{sweep['subset_last']['fast']}/{sweep['subset_last']['slow']}, {sweep['vbt_windows']} distinct "
        "windows): `vbt.MA.run(close_df, windows)` once, entries = fast MA > slow MA per combination, one "
        "`from_signals` over the tiled closes grouped per combination (`group_by`, capital / symbols per "
        "column), then total return, Sharpe and max drawdown per combination — fewer metrics than ours. "
        f"Best of {VBT_SWEEP_REPEATS} after a warm-up on a slice. Its results agree with ours on the "
        f"{sweep['compared']} subset combinations in our ranked table (top {sweep['rows']:,}): total return "
        f"within {sweep['max_diff']:.1e} relative, Sharpe within {sweep['max_sharpe_diff']:.1e} (the "
        "extra first-bar return above). Peak RSS: the kernel's VmHWM after resetting it "
        "(`/proc/self/clear_refs`) minus the RSS before the call; the input panels are allocated before.",
    ]
    return "\n".join(lines)


def run() -> Section:
    print("[bench:backtest] one strategy ...", flush=True)
    single = measure_single()
    print("[bench:backtest] sweep ...", flush=True)
    sweep = measure_sweep()
    print("[bench:backtest] end to end over gRPC ...", flush=True)
    from bench import backtest_service
    e2e = backtest_service.measure()
    return Section("Backtests", render(single, sweep) + "\n\n" + "\n".join(backtest_service.render(e2e)))
