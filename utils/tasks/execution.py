"""Execution simulation job (ExecutionService.SimulateExecution, task type ``execution``): parent
orders replayed through stored bars by several algorithms side by side, with a market-impact model
(``utils.engine.execution``).

Each order's window is its symbol's stored bars with time in [start, end], one child slice per bar.
A bar's market price is its typical price (high + low + close) / 3; its volatility is the standard
deviation of the symbol's log typical-price changes over the 30 bars before it (no look-ahead; the
symbol's whole-history value until 30 bars exist). The schedules:

* ``twap``: equal slices per bar;
* ``vwap``: the symbol's intraday volume profile of the 20 days before the order
  (``utils/engine/execution/profile.py``), TWAP when no earlier day has enough bars;
* ``pov``: ``participation`` x each bar's volume until the order is done (the last bar takes the
  rest; the impact model's participation cap still limits what fills);
* ``almgren_chriss``: the discrete AC schedule over the bars with ``risk_aversion``, the window's
  first-bar volatility in price units and the impact model's ``eta``/``gamma``/``epsilon`` (linear
  model) or, for the square-root model, the square-root law linearised at the TWAP slice
  (eta = coefficient x sigma x price / sqrt(volume x slice));
* ``policy``: a trained ``ppo_execution`` model acting bar by bar on what it has seen.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from utils.data.store import BarStore, SymbolNotFound
from utils.queue.worker import JobContext, PermanentJobError
from utils.tasks.resources import WorkerResources

SIGMA_BARS = 30
PROFILE_DAYS = 20
NS_PER_DAY = 86_400 * 10**9


def bar_sigmas(prices: np.ndarray) -> np.ndarray:
    """Per bar: std (ddof 1) of the log price changes over the SIGMA_BARS bars before it."""
    changes = np.diff(np.log(prices), prepend=np.nan)
    fallback = float(np.nanstd(changes, ddof=1)) if prices.size > 2 else 0.0
    sigmas = np.full(prices.size, fallback if math.isfinite(fallback) else 0.0)
    if prices.size > SIGMA_BARS + 1:
        windows = np.lib.stride_tricks.sliding_window_view(changes[1:], SIGMA_BARS)  # ends at bar k + SIGMA_BARS
        sigmas[SIGMA_BARS + 1:] = windows.std(axis=1, ddof=1)[:prices.size - SIGMA_BARS - 1]
    return sigmas


class SymbolBars:
    """One symbol's bars as the simulator reads them."""

    def __init__(self, bars: Any) -> None:
        from utils.engine.execution import typical_prices
        self.time = bars.time
        self.prices = typical_prices(bars.high, bars.low, bars.close)
        self.volumes = np.asarray(bars.volume, dtype=np.float64)
        self.sigmas = bar_sigmas(self.prices)
        self._profiles: dict[tuple[int, int], np.ndarray | None] = {}

    def window(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        return int(np.searchsorted(self.time, start_ns, "left")), int(np.searchsorted(self.time, end_ns, "right"))

    def profile(self, first: int, slices: int) -> np.ndarray | None:
        """The volume profile of the PROFILE_DAYS days before bar ``first`` (None: none available)."""
        from utils.engine.execution.profile import NoIntradayProfile, intraday_volume_profile
        day_start = int(self.time[first] // NS_PER_DAY * NS_PER_DAY)
        key = (day_start, slices)
        if key not in self._profiles:
            before = int(np.searchsorted(self.time, day_start, "left"))
            earliest = int(np.searchsorted(self.time, day_start - (PROFILE_DAYS + 10) * NS_PER_DAY, "left"))
            try:
                self._profiles[key] = intraday_volume_profile(self.time[earliest:before], self.volumes[earliest:before],
                                                              slices, PROFILE_DAYS)
            except NoIntradayProfile:
                self._profiles[key] = None
        return self._profiles[key]


def _schedule(algorithm: str, side: str, quantity: float, bars: SymbolBars, first: int, last: int,
              payload: dict[str, Any]) -> np.ndarray:
    from utils.engine.execution import plan_execution
    count = last - first
    if algorithm == "twap" or count == 1:
        return np.full(count, quantity / count)
    if algorithm == "vwap":
        profile = bars.profile(first, count)
        return np.full(count, quantity / count) if profile is None else quantity * profile
    if algorithm == "pov":
        wanted = payload["participation"] * bars.volumes[first:last]
        done = np.minimum(np.cumsum(wanted), quantity)
        schedule = np.diff(done, prepend=0.0)
        schedule[-1] += quantity - done[-1]
        return schedule
    impact = payload["impact"]
    price, sigma = bars.prices[first], max(bars.sigmas[first], 1e-12)
    if impact["kind"] == "linear":
        eta, gamma, epsilon = impact["eta"], impact["gamma"], impact["epsilon"]
    else:
        slice_size = quantity / count
        volume = max(float(np.mean(bars.volumes[first:last])), 1.0)
        eta, gamma, epsilon = impact["coefficient"] * sigma * price / math.sqrt(volume * slice_size), 0.0, 0.0
    try:
        plan = plan_execution("almgren_chriss", side, quantity, count, float(count), 0.0, sigma=sigma * price,
                              eta=max(eta, 1e-300), gamma=gamma, epsilon=epsilon,
                              risk_aversion=payload["risk_aversion"])
    except ValueError as exc:
        raise PermanentJobError(f"almgren_chriss: {exc}") from None
    return np.asarray(plan.quantities, dtype=np.float64)


def _policy_schedule(policy: Any, order: dict[str, Any], bars: SymbolBars, first: int, last: int) -> np.ndarray:
    """The trained policy's schedule from the bars before the order (the arrival bar when none)."""
    from utils.engine.execution.policy.inference import PlanState
    history = int(policy.config.history_bars)
    start = max(0, first - history)
    stop = first if first > start else first + 1
    schedule = policy.plan(PlanState(side=1 if order["side"] == "buy" else -1, quantity=order["quantity"],
                                     n_bars=last - first, prices=bars.prices[start:stop], volumes=bars.volumes[start:stop],
                                     sigma=float(bars.sigmas[first])))
    return np.asarray(schedule, dtype=np.float64)


def _distribution(values: np.ndarray) -> dict[str, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"mean": None, "std": None, "p5": None, "p50": None, "p95": None}
    p5, p50, p95 = np.percentile(finite, [5, 50, 95])
    return {"mean": float(finite.mean()), "std": float(finite.std(ddof=1)) if finite.size > 1 else None,
            "p5": float(p5), "p50": float(p50), "p95": float(p95)}


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def simulate(store: BarStore, payload: dict[str, Any], policy: Any = None) -> dict[str, Any]:
    """The job's result without timing (also used by tests and the benchmark)."""
    from utils.engine.execution import ImpactModel, batch_order_metrics, simulate_orders
    from utils.engine.execution.schedules import close_last_slice
    orders, algorithms = payload["orders"], payload["algorithms"]
    try:
        symbols = {s: SymbolBars(b) for s, b in store.read_many(sorted({o["symbol"] for o in orders})).items()}
    except SymbolNotFound as exc:
        raise PermanentJobError(str(exc)) from None
    windows, offsets = [], [0]
    for index, order in enumerate(orders):
        first, last = symbols[order["symbol"]].window(order["start_ns"], order["end_ns"])
        if last <= first:
            raise PermanentJobError(f"orders[{index}]: {order['symbol']} has no stored bars between its start_time "
                                    f"and end_time")
        windows.append((symbols[order["symbol"]], first, last))
        offsets.append(offsets[-1] + last - first)
    prices = np.concatenate([bars.prices[a:b] for bars, a, b in windows])
    volumes = np.concatenate([bars.volumes[a:b] for bars, a, b in windows])
    sigmas = np.concatenate([bars.sigmas[a:b] for bars, a, b in windows])
    sides = np.array([1.0 if o["side"] == "buy" else -1.0 for o in orders])
    quantities = np.array([o["quantity"] for o in orders], dtype=np.float64)
    schedules = np.empty((len(algorithms), prices.size))
    for row, algorithm in enumerate(algorithms):
        for index, ((bars, first, last), order) in enumerate(zip(windows, orders)):
            schedule = np.ascontiguousarray(
                _policy_schedule(policy, order, bars, first, last) if algorithm == "policy" else
                _schedule(algorithm, order["side"], order["quantity"], bars, first, last, payload), dtype=np.float64)
            close_last_slice(schedule, float(order["quantity"]))  # sums to the quantity exactly
            schedules[row, offsets[index]:offsets[index + 1]] = schedule
    impact = payload["impact"]
    model = ImpactModel(kind=impact["kind"], coefficient=impact["coefficient"], eta=impact["eta"],
                        gamma=impact["gamma"], epsilon=impact["epsilon"], participation_cap=impact["participation_cap"])
    try:
        result = simulate_orders(sides, quantities, np.asarray(offsets), np.maximum(schedules, 0.0), prices, volumes,
                                 sigmas, model)
    except ValueError as exc:
        raise PermanentJobError(f"simulation: {exc}") from None
    metrics = batch_order_metrics(sides, quantities, np.asarray(offsets), result, prices)
    entries = []
    for row, algorithm in enumerate(algorithms):
        pa, shortfall, ffr = (metrics[name][row] for name in ("price_advantage_bps", "implementation_shortfall_bps",
                                                              "ffr"))
        outcomes = [{"order": index, "average_price": _number(metrics["average_price"][row, index]),
                     "shortfall_bps": _number(shortfall[index]), "pa_bps": _number(pa[index]),
                     "ffr": _number(ffr[index]),
                     "fills": result.filled[row, offsets[index]:offsets[index + 1]].tolist()
                     if payload.get("include_fills") else []}
                    for index in range(len(orders))] if len(orders) <= 1000 else []
        entries.append({"algorithm": algorithm, "pa_bps": _distribution(pa), "shortfall_bps": _distribution(shortfall),
                        "ffr": _distribution(ffr), "pos": float(np.mean(metrics["pos"][row])), "orders": outcomes})
    return {"algorithms": entries}


def make_execution_handler(resources: WorkerResources):
    def handle(context: JobContext) -> dict[str, Any]:
        started = time.perf_counter()
        payload = context.payload
        policy = resources.execution_policies.get(payload["model_id"]) if "policy" in payload["algorithms"] else None
        result = simulate(resources.bar_store, payload, policy)
        elapsed = time.perf_counter() - started
        result.update(compute_time=elapsed, device="cpu",
                      orders_per_second=len(payload["orders"]) * len(payload["algorithms"]) / max(elapsed, 1e-9))
        context.progress(1.0)
        return result
    return handle
