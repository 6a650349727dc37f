"""A worker's warm-up: each task type's own code run once on tiny synthetic inputs, before the
worker takes jobs, so the first real job of each kind finds its kernels compiled (or loaded from
numba's on-disk cache: ``utils.compile_cache``) and its libraries imported.

Each warm-up calls the same functions the type's handler calls (the handler itself where it needs
only bars), on a few symbols x a few hundred bars served from memory (``SyntheticBars``, the
``BarStore`` reads the handlers use): nothing is written to Redis or to the model store. A warm-up
that fails is logged and skipped (the first job of that kind then compiles for itself). The whole
run stops starting new steps at its time budget (WORKER_WARM_UP_SECONDS) or when the worker is
told to stop.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from utils.data.store import Bars, StoredColumns, SymbolNotFound
from utils.queue.jobs import JobRecord, JobStatus
from utils.queue.worker import JobContext
from utils.tasks.resources import WorkerResources

log = logging.getLogger(__name__)

DAY_NS = 86_400 * 10**9
MINUTE_NS = 60 * 10**9
FIRST_DAY_NS = 1_577_836_800 * 10**9  # 2020-01-01
SYMBOLS = ("WARM.A", "WARM.B", "WARM.C")
# what the built-in strategy types without defaults for everything need
STRATEGY_PARAMS = {"top_k": {"factor": "ts_mean(close, 5) / close"}, "signals": {"entry": "close > sma(close, 20)"}}
FILTER_ZSCORE = 20.0  # the factor services' default outlier filter (services/factor_requests.py)
# ComputeFeatures' and StreamMarketData's default features (services/realtime_service.py)
FEATURES = ("sma_5", "sma_20", "ema_12", "rsi", "macd", "bollinger")


class SyntheticBars:
    """Random-walk bars of a few symbols, answering the ``BarStore`` reads the handlers make."""

    def __init__(self, symbols: tuple[str, ...] = SYMBOLS, rows: int = 300, step_ns: int = DAY_NS,
                 seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        times = FIRST_DAY_NS + np.arange(rows, dtype=np.int64) * step_ns
        self._bars = {}
        for symbol in symbols:
            close = 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, rows)))
            open_ = close * np.exp(rng.normal(0.0, 0.004, rows))
            high, low = np.maximum(open_, close) * 1.01, np.minimum(open_, close) * 0.99
            self._bars[symbol] = Bars(symbol, times, open_, high, low, close, rng.uniform(5e5, 2e6, rows), 1)
        self.times = times

    def read(self, symbol: str, start_ns: int | None = None, end_ns: int | None = None) -> Bars:
        if symbol not in self._bars:
            raise SymbolNotFound(symbol)
        return self._bars[symbol].between(start_ns, end_ns)

    def read_many(self, symbols: list[str], start_ns: int | None = None, end_ns: int | None = None
                  ) -> dict[str, Bars]:
        return {symbol: self.read(symbol, start_ns, end_ns) for symbol in symbols}

    def read_interval_bars(self, symbol: str, interval: str, start_ns: int | None = None,
                           end_ns: int | None = None) -> Bars:
        return self.read(symbol, start_ns, end_ns)

    def read_columns_many(self, symbols: list[str], columns: tuple[str, ...], start_ns: int | None = None
                          ) -> dict[str, StoredColumns]:
        found = {}
        for symbol in symbols:
            bars = self.read(symbol, start_ns)
            found[symbol] = StoredColumns(bars.version, bars.time, {name: getattr(bars, name) for name in columns})
        return found

    def versions(self, symbols: list[str]) -> list[int | None]:
        return [self._bars[symbol].version if symbol in self._bars else None for symbol in symbols]


@dataclass
class WarmUpInputs:
    """What the warm-ups share: the settings, the backend of each task type, daily and minute bars."""

    settings: Any
    backends: dict[str, Any]  # task type -> Backend (the worker's, or the CPU for gpu=False types)
    daily: SyntheticBars = field(default_factory=SyntheticBars)
    minutes: SyntheticBars = field(default_factory=lambda: SyntheticBars(rows=3 * 390, step_ns=MINUTE_NS))

    @property
    def period(self) -> dict[str, int]:
        return {"start_ns": int(self.daily.times[0]), "end_ns": int(self.daily.times[-1])}

    @property
    def short_period(self) -> dict[str, int]:
        """40 days: the factor code's per-date loops (a parallel launch per date) stay short."""
        return {"start_ns": int(self.daily.times[0]), "end_ns": int(self.daily.times[39])}


def job_context(task_type: str, payload: dict[str, Any]) -> JobContext:
    """A JobContext for running a handler outside the queue (progress goes nowhere)."""
    now = time.time()
    record = JobRecord(id=f"warm-up-{task_type}", task_type=task_type, status=JobStatus.RUNNING, priority="normal",
                       progress=0.0, attempts=1, max_attempts=1, created_at=now, enqueued_at=now, started_at=now,
                       finished_at=None, error="", owner="", device="", cancel_requested=False, payload=payload,
                       meta={})
    return JobContext(record=record, attempt=1, report=lambda *args, **kwargs: None)


class SyntheticResources(WorkerResources):
    """A handler's resources with its bars served from memory and no shared panel cache (the
    warm-ups use no other store)."""

    def __init__(self, settings: Any, backend: Any, bars: SyntheticBars) -> None:
        super().__init__(settings, backend)
        self._bars = bars

    @property
    def bar_store(self) -> SyntheticBars:
        return self._bars

    @property
    def aligned_bars_cache(self) -> None:
        return None


def warm_backtest(inputs: WarmUpInputs) -> None:
    """A single run and a small sweep of the default strategy, and one run of every other
    built-in strategy type (their signals use other kernels)."""
    from utils.engine.backtest.strategies import STRATEGIES
    from utils.tasks.backtest import make_backtest_handler
    handle = make_backtest_handler(SyntheticResources(inputs.settings, inputs.backends["backtest"], inputs.daily))
    base = {"symbols": list(SYMBOLS), "initial_capital": 1_000_000.0, "commission_rate": 0.001, **inputs.period}
    handle(job_context("backtest", {**base, "strategy_config": {"strategy_type": "sma_crossover",
                                                                  "fast": 10, "slow": 30}}))
    handle(job_context("backtest", {**base, "strategy_config": {
        "strategy_type": "sma_crossover", "param_grid": {"fast": [5, 10], "slow": [20, 40]}}}))
    for name in STRATEGIES:
        if name == "sma_crossover":
            continue
        try:  # a type that needs more (a model, a stored factor set) is warmed by its first job
            config = {"strategy_type": name, **STRATEGY_PARAMS.get(name, {})}
            handle(job_context("backtest", {**base, "strategy_config": config}))
        except Exception as exc:  # noqa: BLE001 - best effort per strategy type
            log.debug("warm-up: backtest strategy %s skipped (%s)", name, exc)


def warm_backtest_shard(inputs: WarmUpInputs) -> None:
    """A symbol shard of a sweep and of a single run (the sleeve simulation the shards use)."""
    from utils.tasks.shards import make_shard_handler
    handle = make_shard_handler(SyntheticResources(inputs.settings, inputs.backends["backtest_shard"], inputs.daily))
    base = {"symbols": list(SYMBOLS), "sleeve_capital": 100_000.0, "commission_rate": 0.001, **inputs.period}
    handle(job_context("backtest_shard", {**base, "strategy_config": {"strategy_type": "sma_crossover",
                                                                        "fast": 10, "slow": 30}}))
    handle(job_context("backtest_shard", {**base, "strategy_config": {
        "strategy_type": "sma_crossover", "param_grid": {"fast": [5, 10], "slow": [20, 40]}}}))


def warm_features(inputs: WarmUpInputs) -> None:
    """The default feature set as a panel (the job) and as series and a stream (ComputeFeatures,
    StreamMarketData in this process's kernels)."""
    from utils.engine.indicators.warmup import warm_up_indicators
    from utils.tasks.features import make_features_handler
    names = list(FEATURES)
    handle = make_features_handler(SyntheticResources(inputs.settings, inputs.backends["features"], inputs.daily))
    handle(job_context("features", {"symbols": list(SYMBOLS), "features": names, "interval": ""}))
    warm_up_indicators(names)


def warm_factor(inputs: WarmUpInputs) -> None:
    from utils.tasks.factor import run_analysis
    run_analysis(inputs.daily, {"symbols": list(SYMBOLS), "periods": [1, 5], "expression": "cs_rank(ts_mean(close, 5))",
                                "max_loss": 1.0, "quantiles": 2, "groups": {}, "filter_zscore": FILTER_ZSCORE,
                                "rank_ties": "average", **inputs.short_period})


def warm_panel_shard(inputs: WarmUpInputs) -> None:
    """A factor analysis' last date shard (a feature shard runs warm_features' code)."""
    from utils.tasks.factor_shards import shard_payloads
    from utils.tasks.panel_shards import make_panel_shard_handler
    period = inputs.short_period
    factor_rows = int(np.searchsorted(inputs.daily.times, period["end_ns"], side="right"))
    payload = {"symbols": list(SYMBOLS), "periods": [1, 5], "expression": "cs_rank(ts_mean(close, 5))",
               "max_loss": 1.0, "quantiles": 2, "groups": {}, "rank_ties": "average", **period}
    shards = shard_payloads(payload, inputs.daily.times[:factor_rows + 5], factor_rows, factor_rows // 2, 5)
    handle = make_panel_shard_handler(SyntheticResources(inputs.settings, inputs.backends["panel_shard"], inputs.daily))
    handle(job_context("panel_shard", shards[-1]))


def warm_factor_eval(inputs: WarmUpInputs) -> None:
    from utils.tasks.factor_eval import run_evaluation
    run_evaluation(inputs.daily, {"symbols": list(SYMBOLS), "names": ["a", "b"], "periods": [1, 5],
                                  "expressions": ["ts_mean(close, 5) / close", "cs_rank(volume)"], "quantiles": 2,
                                  "max_loss": 1.0, "filter_zscore": FILTER_ZSCORE, **inputs.short_period})


def warm_factor_set(inputs: WarmUpInputs) -> None:
    from utils.engine.factors.combine import METHODS, combine_factors
    from utils.tasks.factor import expression_factors
    from utils.tasks.factor_panels import aligned_bars
    period = inputs.short_period
    aligned = aligned_bars(inputs.daily, list(SYMBOLS), period["start_ns"], period["end_ns"], 0, ("close", "volume"))
    factors = expression_factors({"a": "ts_mean(close, 5) / close", "b": "cs_rank(volume)"}, aligned)
    for method in METHODS:
        combine_factors(np.stack([factors["a"], factors["b"]]), aligned.close, 1, 60, method)


def warm_portfolio(inputs: WarmUpInputs) -> None:
    from utils.tasks.portfolio import optimise
    for objective in ("min_volatility", "max_sharpe", "hrp"):
        optimise(inputs.daily, {"symbols": list(SYMBOLS), "objective": objective, **inputs.period})


def warm_risk(inputs: WarmUpInputs) -> None:
    from utils.tasks.risk import assess
    backend = inputs.backends["risk"]
    assess(inputs.daily, {"weights": {symbol: 1.0 / len(SYMBOLS) for symbol in SYMBOLS}, "mc_scenarios": 1000,
                          "seed": 1, "benchmark": SYMBOLS[0], **inputs.period}, backend.xp)


def warm_execution(inputs: WarmUpInputs) -> None:
    from utils.tasks.execution import simulate
    times = inputs.minutes.times
    order = {"symbol": SYMBOLS[0], "side": "buy", "quantity": 10_000.0, "start_ns": int(times[-120]),
             "end_ns": int(times[-1])}
    simulate(inputs.minutes, {"orders": [order, {**order, "side": "sell"}],
                              "algorithms": ["twap", "vwap", "pov", "almgren_chriss"], "participation": 0.1,
                              "risk_aversion": 1e-6, "impact": {"kind": "sqrt", "coefficient": 0.1, "eta": 0.0,
                                                                 "gamma": 0.0, "epsilon": 0.0,
                                                                 "participation_cap": 0.25}})


def warm_training(inputs: WarmUpInputs) -> None:
    """The tree and linear models on 200 rows (imports scikit-learn/LightGBM and their first fit)."""
    from utils.engine.models import ModelConfig, train_model
    rng = np.random.default_rng(3)
    columns = {"x1": rng.normal(size=200), "x2": rng.normal(size=200)}
    columns["y"] = columns["x1"] * 0.5 + rng.normal(scale=0.1, size=200)
    for model_type, params in (("random_forest", {"n_estimators": 4}), ("gradient_boosting", {"n_estimators": 4}),
                               ("linear", {})):
        config = ModelConfig(model_type=model_type, feature_columns=("x1", "x2"), target_column="y", params=params)
        train_model(config, columns, inputs.backends["training"])


def warm_import(inputs: WarmUpInputs) -> None:
    """ImportFile's reader on a tiny CSV in a temporary directory (imports pyarrow's CSV reader and
    runs the validation); nothing reaches the bar store."""
    import tempfile
    from pyarrow import fs as pafs
    from utils.data.file_import import read_bar_file
    with tempfile.TemporaryDirectory(prefix="gq-warm-import-") as folder:
        path = f"{folder}/warm.csv"
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("symbol,date,open,high,low,close,volume\n")
            for day in range(1, 4):
                handle.write(f"{SYMBOLS[0]},2020-01-0{day},10,11,9,10.5,1000\n")
        read_bar_file(pafs.LocalFileSystem(), path)


def warm_report(inputs: WarmUpInputs) -> None:
    import utils.tasks.report  # noqa: F401 - the tearsheet renderer's imports


WARM_UPS: dict[str, Callable[[WarmUpInputs], None]] = {
    "backtest": warm_backtest, "backtest_shard": warm_backtest_shard, "features": warm_features, "factor": warm_factor, "factor_eval": warm_factor_eval,
    "panel_shard": warm_panel_shard,
    "factor_set": warm_factor_set, "portfolio": warm_portfolio, "risk": warm_risk, "execution": warm_execution,
    "training": warm_training, "report": warm_report, "import": warm_import,
}


@dataclass
class WarmUpReport:
    seconds: dict[str, float] = field(default_factory=dict)  # per task type run, in order
    failed: list[str] = field(default_factory=list)  # types whose warm-up raised (logged)
    complete: bool = True  # False: stopped by the budget or a shutdown before the last type


def warm_up(settings: Any, backends: dict[str, Any], budget_seconds: float, stop: threading.Event | None = None,
            warm_ups: dict[str, Callable[[WarmUpInputs], None]] | None = None) -> WarmUpReport:
    """Run the warm-up of every task type in ``backends`` that has one, in registry order, until
    ``budget_seconds`` have passed or ``stop`` is set (a step under way finishes)."""
    warm_ups = WARM_UPS if warm_ups is None else warm_ups
    started = time.perf_counter()
    inputs = WarmUpInputs(settings, backends)
    report = WarmUpReport()
    for name in backends:
        step = warm_ups.get(name)
        if step is None:
            continue
        if (stop is not None and stop.is_set()) or time.perf_counter() - started >= budget_seconds:
            log.info("warm-up stopped before %s (budget %.0f s, or shutting down)", name, budget_seconds)
            report.complete = False
            break
        begun = time.perf_counter()
        try:
            step(inputs)
        except Exception:  # noqa: BLE001 - the first job of that kind will compile for itself
            log.warning("warm-up of %s failed; its first job will compile its kernels", name, exc_info=True)
            report.failed.append(name)
        report.seconds[name] = time.perf_counter() - begun
    log.info("warm-up done in %.1f s (%s)", time.perf_counter() - started,
             ", ".join(f"{name} {value:.1f}s" for name, value in report.seconds.items()) or "nothing to warm")
    return report
