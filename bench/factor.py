"""Factor benchmark: ``analyze_factor`` against alphalens-reloaded, end to end over gRPC, and many
factors in a row (issue 12, "Performance").

1. One factor on 3,000 symbols x 2,520 days (a synthetic universe: random-walk prices with fat
   tails, late listings, halts and delistings; a factor with NaNs), periods 1/5/10, 5 quantiles.
   Ours: ``analyze_factor(prices, factor)`` (everything alphalens' tear sheets report, in one
   call). Anchor: alphalens' ``get_clean_factor_and_forward_returns`` + information table
   (``factor_information_coefficient`` + ``plot_information_table(return_df=True)``) +
   ``mean_return_by_quantile`` + ``quantile_turnover`` (every quantile and period) +
   ``factor_rank_autocorrelation``, called as tests/parity/test_factor_alphalens.py calls them, on
   the same data. Wall time, peak RSS increase and agreement of the numbers, in the same run.
2. End to end over gRPC: the real server and one worker (``platform_processes`` of the
   backtest_service section) on a private Redis holding the universe's closes as bars;
   ``FactorService.AnalyzeFactor`` with the factor as a ``values`` FactorPanel (and once as an
   expression) -> ``JobService.WatchJob`` until COMPLETED -> ``GetFactorAnalysis``.
3. Many factors on 1,000 symbols x 2,520 days: an evenly spaced subset of the Alpha158 library,
   ``evaluate_factors`` then ``score_factors`` (the EvaluateFactors job's engine path); the 158
   are extrapolated from it (labelled as such).

``BENCH_QUICK=1``: tiny sizes (numbers meaningless), for a smoke run.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import time
import warnings
from typing import Iterator

import numpy as np

from bench import Section
from bench.backtest import _peak_increase

QUICK = os.environ.get("BENCH_QUICK") == "1"
DAYS, SYMBOLS = (150, 60) if QUICK else (2520, 3000)
# alphalens runs at the full size when it fits the section's time box (~65 s on the 2-core machine)
ANCHOR_SYMBOLS = int(os.environ.get("BENCH_FACTOR_ANCHOR_SYMBOLS", SYMBOLS))
PERIODS = (1, 5, 10)
QUANTILES = 5
OURS_REPEATS = 2 if QUICK else 3
E2E_RUNS = 2
MANY_SYMBOLS = 40 if QUICK else 1000
MANY_FACTORS = 158
MANY_RUN = 6 if QUICK else 20  # Alpha158 factors actually run; the 158 are extrapolated from them
SEED = 20260412
FIRST_DAY = "2011-01-03"
TARGET_SPEEDUP = 20.0
RTOL = 1e-9
EXPRESSION = "-(close / ref(close, 5) - 1)"


# ------------------------------------------------------------------ data
def universe(days: int, symbols: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(prices, factor), both (days x symbols). Prices: random walks with Student-t(4) daily
    returns (volatility 1-3.5 %/day per symbol); 15 % of the symbols listed late (first row
    uniform in the first 60 %), 3 % delisted in the second half, 2 halts of 1-10 days per symbol
    on average, 0.2 % isolated missing days. Factor: a noisy view of the next 5 days' log return
    (an IC around 0.05) plus 5-day reversal; NaN where the price is, and 3 % more at random."""
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0.01, 0.035, symbols)
    steps = rng.standard_t(4, (days, symbols)) * (vol / math.sqrt(2.0)) + rng.normal(0.0002, 0.0002, symbols)
    log_price = np.log(rng.uniform(5, 200, symbols)) + np.cumsum(steps, axis=0)
    prices = np.exp(log_price)
    for symbol in np.flatnonzero(rng.random(symbols) < 0.15):
        prices[:rng.integers(1, int(days * 0.6)), symbol] = np.nan
    for symbol in np.flatnonzero(rng.random(symbols) < 0.03):
        prices[rng.integers(days // 2, days - 20):, symbol] = np.nan
    for _ in range(2 * symbols):
        start = rng.integers(0, days)
        prices[start:start + rng.integers(1, 11), rng.integers(0, symbols)] = np.nan
    prices[rng.random(prices.shape) < 0.002] = np.nan
    prices[0, np.isnan(prices).all(axis=0)] = 100.0  # no symbol without a single bar

    ahead = np.full_like(log_price, np.nan)
    ahead[:-5] = log_price[5:] - log_price[:-5]
    behind = np.full_like(log_price, np.nan)
    behind[5:] = log_price[5:] - log_price[:-5]
    scale = vol * math.sqrt(5.0)
    factor = (0.05 * np.nan_to_num(ahead) - 0.02 * np.nan_to_num(behind)) / scale \
        + rng.standard_normal((days, symbols))
    factor[np.isnan(prices) | (rng.random(prices.shape) < 0.03)] = np.nan
    return prices, factor


def dates(days: int):
    import pandas as pd
    return pd.bdate_range(FIRST_DAY, periods=days)


# ------------------------------------------------------------------ measuring
def _ours(prices: np.ndarray, factor: np.ndarray, repeats: int) -> dict:
    from utils.engine.factors import analyze_factor
    result, first, peak = _peak_increase(lambda: analyze_factor(prices, factor, periods=PERIODS,
                                                                quantiles=QUANTILES))
    runs = [first]
    for _ in range(repeats - 1):
        began = time.perf_counter()
        analyze_factor(prices, factor, periods=PERIODS, quantiles=QUANTILES)
        runs.append(time.perf_counter() - began)
    return {"result": result, "runs": runs, "best": min(runs), "peak": peak}


def _alphalens(prices: np.ndarray, factor: np.ndarray) -> dict:
    """alphalens on the same data, given as a user would: prices as a dates x symbols frame, the
    factor as a (date, asset) Series without the panel's NaN cells (built outside the timing)."""
    import pandas as pd
    from alphalens import performance as perf, plotting, utils as al_utils
    days, symbols = prices.shape
    index_dates = dates(days)
    names = [f"S{index:04d}" for index in range(symbols)]
    price_frame = pd.DataFrame(prices, index=index_dates, columns=names)
    factor_series = pd.Series(factor.ravel(), index=pd.MultiIndex.from_product(
        [index_dates, names], names=["date", "asset"])).dropna()
    steps: dict[str, float] = {}
    out: dict = {}

    def run():
        clock = time.perf_counter()

        def lap(name):
            nonlocal clock
            now = time.perf_counter()
            steps[name] = now - clock
            clock = now

        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = al_utils.get_clean_factor_and_forward_returns(
                factor_series, price_frame, quantiles=QUANTILES, periods=PERIODS, filter_zscore=20,
                max_loss=0.35)
            lap("clean")
            ic = perf.factor_information_coefficient(data)
            table = plotting.plot_information_table(ic, return_df=True)
            lap("information")
            mean_ret, _ = perf.mean_return_by_quantile(data, demeaned=True)
            lap("mean_return")
            turnover = {period: [perf.quantile_turnover(data["factor_quantile"], q, period).mean()
                                 for q in range(1, QUANTILES + 1)] for period in PERIODS}
            lap("turnover")
            autocorr = {period: perf.factor_rank_autocorrelation(data, period).mean() for period in PERIODS}
            lap("autocorrelation")
        columns = list(al_utils.get_forward_returns_columns(data.columns))
        out.update(kept=len(data), factor_values=len(factor_series), periods={
            period: {"ic_mean": float(table.loc[column, "IC Mean"]),
                     "mean_return_by_quantile": np.array([mean_ret[column].get(q, np.nan)
                                                          for q in range(1, QUANTILES + 1)], dtype=float),
                     "mean_turnover_by_quantile": np.array(turnover[period], dtype=float),
                     "rank_autocorrelation": float(autocorr[period])}
            for column, period in zip(columns, PERIODS)})

    _, seconds, peak = _peak_increase(run)
    return {**out, "seconds": seconds, "peak": peak, "steps": steps}


def _rel(ours, theirs) -> float:
    """Largest relative difference (1e-12 absolute floor; NaN on both sides counts as equal)."""
    ours, theirs = np.atleast_1d(np.asarray(ours, float)), np.atleast_1d(np.asarray(theirs, float))
    both_nan = np.isnan(ours) & np.isnan(theirs)
    if (np.isnan(ours) != np.isnan(theirs)).any():
        return math.inf
    diff = np.abs(ours - theirs)[~both_nan]
    scale = np.maximum(np.abs(theirs[~both_nan]), 1e-12)
    return float((diff / scale).max()) if diff.size else 0.0


def agreement(ours, theirs: dict) -> dict:
    fields = ("ic_mean", "mean_return_by_quantile", "mean_turnover_by_quantile", "rank_autocorrelation")
    worst = {field: max(_rel(getattr(ours.period(p), field), theirs["periods"][p][field]) for p in PERIODS)
             for field in fields}
    return {"worst": worst, "kept_equal": ours.loss.kept == theirs["kept"],
            "values_equal": ours.loss.factor_values == theirs["factor_values"]}


def measure_single() -> dict:
    from utils.engine.factors import analyze_factor
    prices, factor = universe(DAYS, SYMBOLS, SEED)
    began = time.perf_counter()
    analyze_factor(prices[:120, :40], factor[:120, :40], periods=PERIODS)  # numba compile / cache load
    warm = time.perf_counter() - began
    print(f"[bench:factor] {SYMBOLS} symbols x {DAYS} days: ours ...", flush=True)
    ours = _ours(prices, factor, OURS_REPEATS)
    print(f"[bench:factor] ours {ours['best']:.2f} s (runs {', '.join(f'{s:.2f}' for s in ours['runs'])}), "
          f"peak +{ours['peak'] / 2**20:.0f} MiB", flush=True)
    anchor_prices, anchor_factor = prices[:, :ANCHOR_SYMBOLS], factor[:, :ANCHOR_SYMBOLS]
    ours_anchor = ours if ANCHOR_SYMBOLS == SYMBOLS else _ours(anchor_prices, anchor_factor, OURS_REPEATS)
    print(f"[bench:factor] alphalens on {ANCHOR_SYMBOLS} symbols x {DAYS} days ...", flush=True)
    theirs = _alphalens(anchor_prices, anchor_factor)
    print(f"[bench:factor] alphalens {theirs['seconds']:.1f} s ("
          + ", ".join(f"{k} {v:.1f}" for k, v in theirs["steps"].items())
          + f"), peak +{theirs['peak'] / 2**20:.0f} MiB", flush=True)
    # once more after alphalens, so that load drift during the anchor hits ours too
    again = _ours(anchor_prices, anchor_factor, 1 if QUICK else 2)
    ours_anchor = {**ours_anchor, "runs": ours_anchor["runs"] + again["runs"],
                   "best": min(ours_anchor["best"], again["best"])}
    if ANCHOR_SYMBOLS == SYMBOLS:
        ours = ours_anchor
    agree = agreement(ours_anchor["result"], theirs)
    print(f"[bench:factor] ratio {theirs['seconds'] / ours_anchor['best']:.1f}x; agreement "
          + ", ".join(f"{k} {v:.1e}" for k, v in agree["worst"].items()), flush=True)
    first = ours["result"]
    return {"ours": ours, "ours_anchor": ours_anchor, "theirs": theirs, "agree": agree, "warm": warm,
            "loss_fraction": first.loss_fraction, "kept": first.loss.kept,
            "ic_mean": {p: first.period(p).ic_mean for p in PERIODS},
            "nan_prices": float(np.isnan(prices).mean()), "nan_factor": float(np.isnan(factor).mean()),
            "prices": prices, "factor": factor}


# ------------------------------------------------------------------ 2. end to end over gRPC
@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Settings for the spawned server and worker (they read the environment at start)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _bar_symbols(count: int) -> list[str]:
    return [f"F{index:04d}.SZ" for index in range(count)]


def _import_universe(redis_port: int, prices: np.ndarray) -> list[str]:
    """Every symbol's closes as daily bars at midnight UTC (no bar where the price is NaN)."""
    import redis
    from utils.data.store import BarStore, Bars
    store = BarStore(redis.Redis(port=redis_port))
    times = dates(prices.shape[0]).values.astype("datetime64[ns]").astype(np.int64)
    symbols = _bar_symbols(prices.shape[1])
    for column, symbol in enumerate(symbols):
        present = ~np.isnan(prices[:, column])
        close = prices[present, column]
        store.write(Bars(symbol, times[present], close, close * 1.01, close * 0.99, close,
                         np.full(close.size, 1e6)), replace=True, source="bench")
    return symbols


def measure_service(prices: np.ndarray, factor: np.ndarray, in_process) -> dict:
    import grpc
    from api_proto import factor_pb2, factor_pb2_grpc, jobs_pb2, jobs_pb2_grpc
    from bench.backtest_service import platform_processes
    days, count = prices.shape
    iso = [str(day.date()) for day in dates(days)]
    cells = days * count
    out: dict = {"runs": [], "message_mb": 0.0}
    settings = {"MAX_SYMBOLS_PER_REQUEST": str(max(500, count)), "MAX_ROWS_PER_REQUEST": str(max(10**6, cells))}
    with _environment(**settings), platform_processes("bench-factor-") as platform:
        began = time.perf_counter()
        symbols = _import_universe(platform.redis_port, prices)
        out["import_seconds"] = time.perf_counter() - began
        print(f"[bench:factor] imported {count} symbols in {out['import_seconds']:.1f} s", flush=True)
        channel = grpc.insecure_channel(f"127.0.0.1:{platform.port}")
        grpc.channel_ready_future(channel).result(timeout=60)
        factors, jobs = factor_pb2_grpc.FactorServiceStub(channel), jobs_pb2_grpc.JobServiceStub(channel)

        def build(columns: int, rows: int) -> tuple[float, object]:
            began = time.perf_counter()
            panel = factor_pb2.FactorPanel(times=iso[:rows], symbols=symbols[:columns],
                                           values=factor[:rows, :columns].ravel().tolist())
            return time.perf_counter() - began, panel

        def submit(columns: int, rows: int, **factor_field) -> dict:
            began = time.perf_counter()
            handle = factors.AnalyzeFactor(factor_pb2.FactorAnalysisRequest(
                symbols=symbols[:columns], start_time=iso[0], end_time=iso[rows - 1], periods=list(PERIODS),
                quantiles=QUANTILES, **factor_field), timeout=300)
            submitted = time.perf_counter()
            for job in jobs.WatchJob(jobs_pb2.JobRequest(job_id=handle.job_id), timeout=600):
                if job.status in (jobs_pb2.COMPLETED, jobs_pb2.FAILED, jobs_pb2.CANCELLED):
                    if job.status != jobs_pb2.COMPLETED:
                        raise RuntimeError(f"{handle.job_id}: {job.error_message}")
                    break
            completed = time.perf_counter()
            result = factors.GetFactorAnalysis(jobs_pb2.JobRequest(job_id=handle.job_id), timeout=60)
            finished = time.perf_counter()
            return {"total": finished - began, "submit": submitted - began, "compute": result.compute_seconds,
                    "get": finished - completed, "result": result}

        # warm-up: the worker's numba compilation / cache load, connections
        submit(40, days, values=build(40, days)[1])
        submit(40, days, expression=EXPRESSION)
        print("[bench:factor] service warm", flush=True)
        for _ in range(E2E_RUNS):
            build_seconds, panel = build(count, days)
            out["message_mb"] = panel.ByteSize() / 1e6
            run = submit(count, days, values=panel)
            run["build"] = build_seconds
            out["runs"].append(run)
            print(f"[bench:factor] values path: build {build_seconds:.1f} s + submit → GetFactorAnalysis "
                  f"{run['total']:.1f} s (submit {run['submit']:.1f}, worker compute {run['compute']:.1f})",
                  flush=True)
        out["expression"] = submit(count, days, expression=EXPRESSION)
        print(f"[bench:factor] expression path {out['expression']['total']:.1f} s "
              f"(worker compute {out['expression']['compute']:.1f})", flush=True)
        channel.close()
        # where the worker's time goes: reading and aligning the stored closes, in this process
        import redis
        from utils.data.store import BarStore
        from utils.data.timeutil import parse_time
        from utils.tasks.factor_panels import aligned_bars
        store = BarStore(redis.Redis(port=platform.redis_port))
        began = time.perf_counter()
        aligned_bars(store, symbols, parse_time(iso[0]), parse_time(iso[-1]), max(PERIODS))
        out["align_seconds"] = time.perf_counter() - began

    # the service's numbers are the in-process ones (same closes, same factor)
    result = out["runs"][-1]["result"]
    worst = 0.0
    for stats in result.periods:
        mine = in_process.period(stats.period)
        for name in ("ic_mean", "ic_std", "t_stat", "factor_return_mean", "top_minus_bottom", "rank_autocorrelation",
                     "mean_return_by_quantile", "mean_turnover_by_quantile"):
            worst = max(worst, _rel(np.asarray(getattr(stats, name)), getattr(mine, name)))
    out["service_vs_in_process"] = worst
    out["loss_fraction"] = result.loss_fraction
    return out


# ------------------------------------------------------------------ 3. many factors
def many_bars() -> dict[str, np.ndarray]:
    """OHLCV panels for the Alpha158 expressions: ``bench.backtest.gbm_panels`` with the missing
    cells (late listings, halts, delistings) of ``universe`` on the same size."""
    from bench.backtest import gbm_panels
    bars = gbm_panels(DAYS, MANY_SYMBOLS, SEED + 1)
    missing = np.isnan(universe(DAYS, MANY_SYMBOLS, SEED + 1)[0])
    for panel in bars.values():
        panel[missing] = np.nan
    return bars


def measure_many() -> dict:
    """An evenly spaced subset of the Alpha158 library (``utils.engine.factors.alpha158``):
    ``evaluate_factors`` (the expressions on the panels), then ``score_factors`` (each one's
    ``analyze_factor``; the EvaluateFactors job's loop), timed apart."""
    from utils.engine.factors.alpha158 import ALPHA158
    from utils.engine.factors.expressions import evaluate_factors
    from utils.engine.factors.scoring import score_factors
    bars = many_bars()
    names = list(ALPHA158)
    step = max(1, math.ceil(len(names) / MANY_RUN))
    subset = {name: ALPHA158[name] for name in names[::step][:MANY_RUN]}
    evaluate_factors(subset, {name: panel[:120, :20] for name, panel in bars.items()})  # compile / cache load
    print(f"[bench:factor] {len(subset)} of {len(names)} Alpha158 factors on {MANY_SYMBOLS} symbols x {DAYS} "
          "days ...", flush=True)
    began = time.perf_counter()
    factors = evaluate_factors(subset, bars)
    evaluate = time.perf_counter() - began
    began = time.perf_counter()
    scores = score_factors(bars["close"], factors, PERIODS, quantiles=QUANTILES)
    score = time.perf_counter() - began
    total = evaluate + score
    print(f"[bench:factor] many factors: evaluate {evaluate:.1f} s + score {score:.1f} s for {len(subset)} "
          f"({len(subset) / total:.2f} factors/s)", flush=True)
    return {"names": list(subset), "library": len(names), "evaluate": evaluate, "score": score, "total": total,
            "per_factor": total / len(subset), "errors": sum(1 for s in scores if s.error),
            "best": max((s for s in scores if not s.error), key=lambda s: abs(s.periods[1]["ic_mean"]),
                        default=None)}


# ------------------------------------------------------------------ report
def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


def _s(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def render(single: dict, service: dict | None, many: dict, load: tuple[float, float]) -> str:
    import alphalens
    import numba
    import pandas as pd
    ours, anchor, theirs, agree = single["ours"], single["ours_anchor"], single["theirs"], single["agree"]
    ratio = theirs["seconds"] / anchor["best"]
    same_size = ANCHOR_SYMBOLS == SYMBOLS
    worst = agree["worst"]
    agreed = all(value <= RTOL for value in worst.values()) and agree["kept_equal"] and agree["values_equal"]
    lines = [
        "Command: `.venv/bin/python -m bench factor`"
        + (" (**BENCH_QUICK=1: tiny sizes, numbers meaningless**)" if QUICK else "")
        + f". Anchor: alphalens-reloaded {alphalens.__version__} (pandas {pd.__version__}), the parity "
        "tests' reference, run in the same process on the same data. Ours: `utils.engine.factors."
        f"analyze_factor` on the CPU (numba {numba.__version__}, {numba.get_num_threads()} threads). "
        f"1-minute load average at the start / end of this section: {load[0]:.1f} / {load[1]:.1f} on "
        f"{os.cpu_count()} CPUs (other processes share the machine; above ~{os.cpu_count()} every number "
        "here is inflated). GPU: `analyze_factor` has no GPU path yet, so the issue's \"on a GPU ≥ 10× "
        "the CPU\" is not measured.",
        "",
        f"Data: a synthetic universe of {SYMBOLS:,} symbols × {DAYS:,} business days (seeded): random-walk "
        "closes with Student-t(4) daily returns (1–3.5 %/day), 15 % of the symbols listed late, 3 % "
        "delisted, ~2 halts of 1–10 days per symbol, scattered missing days "
        f"({single['nan_prices'] * 100:.1f} % of the price cells NaN); the factor is a noisy view of the "
        f"next 5 days' return plus 5-day reversal, NaN where the price is and 3 % more "
        f"({single['nan_factor'] * 100:.1f} % NaN). Periods {', '.join(map(str, PERIODS))}, {QUANTILES} "
        f"quantiles, alphalens' defaults otherwise (max_loss 0.35, filter_zscore 20). Cleaning kept "
        f"{single['kept']:,} factor values (loss {single['loss_fraction'] * 100:.2f} %); IC mean "
        + ", ".join(f"{single['ic_mean'][p]:.4f} ({p}D)" for p in PERIODS) + ".",
        "",
        f"### One factor: analyze_factor vs alphalens ({ANCHOR_SYMBOLS:,} symbols × {DAYS:,} days"
        + ("" if same_size else ", a smaller size than the target's: alphalens at full size would not fit the "
                                "section's time box") + ")",
        "",
        "| Engine | seconds | peak RSS increase | alphalens / ours | target | met? |",
        "|---|---:|---:|---:|---|---|",
        f"| ours: `analyze_factor(prices, factor, periods=(1, 5, 10), quantiles=5)`, best of "
        f"{len(anchor['runs'])} | {_s(anchor['best'])} | {_mib(anchor['peak'])} | {ratio:.1f}× | ≥ 20× | "
        f"{'yes' if ratio >= TARGET_SPEEDUP else 'no'} |",
        f"| anchor: alphalens, one run (steps below) | {_s(theirs['seconds'])} | {_mib(theirs['peak'])} | 1.0× | | |",
        "",
        "alphalens' steps (s): " + ", ".join(
            f"{name.replace('_', ' ')} {_s(value)}" for name, value in theirs["steps"].items())
        + " — `get_clean_factor_and_forward_returns(factor, prices, quantiles=5, periods=(1, 5, 10), "
        "filter_zscore=20, max_loss=0.35)`; `factor_information_coefficient` + `plot_information_table("
        "ic, return_df=True)`; `mean_return_by_quantile(data, demeaned=True)`; `quantile_turnover` for "
        "each of the 5 quantiles and 3 periods; `factor_rank_autocorrelation` for each period. Ours "
        "computes more in its one call (Pearson IC/ICIR, factor returns and their alpha/beta, standard "
        "errors, top-minus-bottom, cumulative returns, the loss breakdown), so the comparison favours "
        "alphalens. Not timed: building alphalens' inputs (a dates × symbols price frame and the factor "
        "as a (date, asset) Series without the NaN cells). Ours' runs: "
        + ", ".join(_s(s) for s in anchor["runs"]) + " s (the last two after alphalens, so load drift hits "
        f"both); first call before them (numba compilation or its on-disk cache) {single['warm']:.1f} s on a "
        "small panel. Peak memory: the kernel's peak RSS (VmHWM, reset before each) above the RSS at the "
        "start of the call, inputs already in memory.",
        "",
        f"Identical numbers: {'yes' if agreed else '**no**'} — the largest relative difference over the 3 "
        "periods (and the 5 quantiles): "
        + ", ".join(f"{name} {value:.1e}" for name, value in worst.items())
        + f" (tolerance {RTOL:g}); the same factor values kept: "
        f"{'yes' if agree['kept_equal'] and agree['values_equal'] else 'no'}.",
    ]
    if not same_size:
        lines += ["", f"Ours at the full {SYMBOLS:,} symbols × {DAYS:,} days: {_s(ours['best'])} s (best of "
                      f"{len(ours['runs'])}), peak RSS +{_mib(ours['peak'])}."]
    if service is None:
        lines += ["", "### End to end over gRPC", "", "| measure | seconds |", "|---|---:|",
                  "| **TODO**: AnalyzeFactor → WatchJob → GetFactorAnalysis (FactorService not available) | — |"]
    else:
        runs = service["runs"]
        best = min(runs, key=lambda run: run["total"])
        expression = service["expression"]
        lines += [
            "",
            f"### End to end over gRPC ({SYMBOLS:,} symbols × {DAYS:,} days, stored closes)",
            "",
            "The real server and one worker (spawned processes, `platform_processes` of the backtest_service "
            f"section) on a private redis-server holding the universe's closes as daily bars (imported in "
            f"{service['import_seconds']:.1f} s with `BarStore.write`, not timed); the server started with "
            f"`MAX_SYMBOLS_PER_REQUEST={max(500, SYMBOLS)}` and `MAX_ROWS_PER_REQUEST={max(10**6, DAYS * SYMBOLS)}` "
            + ("(the defaults, 500 symbols and 1,000,000 values, refuse this request). "
               if SYMBOLS > 500 or DAYS * SYMBOLS > 10**6 else "(the defaults). ")
            + "After a warm-up job of each kind:",
            "",
            "| measure | seconds | × in-process `analyze_factor` (best) |",
            "|---|---:|---:|",
            f"| `values` path: build the FactorPanel message from the (T, N) array (client side, "
            f"{service['message_mb']:.0f} MB) | {_s(best['build'])} | |",
            f"| `values` path: AnalyzeFactor → WatchJob COMPLETED → GetFactorAnalysis, best of {len(runs)} "
            f"({', '.join(_s(r['total']) for r in runs)}) | {_s(best['total'])} | {best['total'] / ours['best']:.1f} |",
            f"| … of which AnalyzeFactor returned (send, validate, store the values in Redis, enqueue) | "
            f"{_s(best['submit'])} | |",
            f"| … of which the worker's compute (`compute_seconds`: load and align the closes, place the "
            f"values, analyze_factor, result document) | {_s(best['compute'])} | {best['compute'] / ours['best']:.1f} |",
            f"| … GetFactorAnalysis after COMPLETED | {_s(best['get'])} | |",
            f"| (for scale: the worker's `aligned_bars` — read the {SYMBOLS:,} symbols' bars from Redis, align "
            f"them on one calendar — timed once in the bench process) | {_s(service['align_seconds'])} | |",
            f"| `values` path with the message build: the user's whole wait | {_s(best['build'] + best['total'])} | "
            f"{(best['build'] + best['total']) / ours['best']:.1f} |",
            f"| `expression` path (`{EXPRESSION}`, evaluated by the worker on the stored bars), one run | "
            f"{_s(expression['total'])} | {expression['total'] / ours['best']:.1f} |",
            f"| in-process `analyze_factor` on the same panels (table above) | {_s(ours['best'])} | 1.0 |",
            "",
            "The issue's target is end to end: AnalyzeFactor ≥ 20× faster than alphalens on the same data. "
            + (f"This run: {theirs['seconds'] / best['total']:.1f}× from AnalyzeFactor to the result "
               f"(**{'met' if theirs['seconds'] / best['total'] >= TARGET_SPEEDUP else 'missed'}**), "
               f"{theirs['seconds'] / (best['build'] + best['total']):.1f}× with the client's message build, "
               f"{theirs['seconds'] / expression['total']:.1f}× by expression (a different factor, same size)."
               if same_size else "not comparable in this run (alphalens ran at a smaller size).")
            + f" The service's numbers equal the in-process ones: largest relative difference "
            f"{service['service_vs_in_process']:.1e} (ic mean/std, t-stat, factor return, top minus bottom, "
            "rank autocorrelation, returns and turnover by quantile).",
        ]
    per = many["per_factor"]
    count = len(many["names"])
    lines += [
        "",
        f"### Many factors: {MANY_FACTORS} × {MANY_SYMBOLS:,} symbols × {DAYS:,} days (in-process, CPU)",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| factors run: every {math.ceil(many['library'] / MANY_RUN)}th of the Alpha158 library "
        f"(`utils.engine.factors.alpha158`, {many['library']} of Qlib's 158) | {count} |",
        f"| `evaluate_factors` (the expressions on the OHLCV panels) | {_s(many['evaluate'])} s |",
        f"| `score_factors` (`analyze_factor` per factor, periods 1/5/10, 5 quantiles) | {_s(many['score'])} s |",
        f"| factors/s (both steps) | {1 / per:.2f} |",
        f"| all {MANY_FACTORS}, **extrapolated** ({MANY_FACTORS} × the mean per factor) | {per * MANY_FACTORS:,.0f} s |",
        "",
        f"Data: `bench.backtest.gbm_panels` OHLCV (seeded) with the missing cells (late listings, halts, delistings) of the universe generator at "
        f"this size. Factors run: {', '.join(many['names'])}"
        + (f"; {many['errors']} rejected by cleaning (kept as error rows by `score_factors`)" if many["errors"] else "")
        + ". `score_factors` is the loop the EvaluateFactors job runs; every factor recomputes forward "
        "returns and cleaning (nothing shared between factors). Not included: the factors' correlation "
        "matrix (`mean_spearman_correlation`, quadratic in the number of factors, so not extrapolated), "
        f"the queue and Redis. Only {count} are run to keep the section within its time box.",
    ]
    return "\n".join(lines)


def run() -> Section:
    load_start = os.getloadavg()[0]
    single = measure_single()
    service = None
    try:
        import services.factor_service  # noqa: F401
    except ImportError:
        print("[bench:factor] services/factor_service.py not found: end to end left as TODO", flush=True)
    else:
        service = measure_service(single["prices"], single["factor"], single["ours"]["result"])
    many = measure_many()
    load = (load_start, os.getloadavg()[0])
    return Section("Factor analysis: analyze_factor vs alphalens, end to end over gRPC, many factors",
                   render(single, service, many, load))
