"""Run a validated strategy over per-symbol bars: align, signal, simulate, measure.

Alignment: every symbol is placed on the union of all symbols' bar times (up to ``end_ns``).
Prices are forward-filled over a symbol's missing bars, and a missing bar is a flat bar at the
last close (open = high = low = close, volume 0), so a next-open fill never uses a stale open.
A symbol that has not started trading yet is NaN there, hence flat. The calendar keeps
``warmup_bars(spec)`` bars before ``start_ns`` for the indicators; the equity curve starts at
the first calendar bar at or after ``start_ns``. Returns are per calendar bar, annualised with
``periods_per_year`` (252: daily bars).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from utils.data.timeutil import format_time, format_times
from utils.engine.backend import Backend
from utils.engine.backtest.config import StrategySpec, size_fractions, target_positions, warmup_bars
from utils.engine.backtest.position_sizing import POLICY_POSITIONS, scaled_size_fractions
from utils.engine.backtest.rebalance import simulate_rebalancing
from utils.engine.backtest.simulate import BacktestOutput, simulate_portfolio, trade_pnl
from utils.engine.backtest.sleeve_kernel import (EXIT_REASONS, OPEN_REASON, T_ENTRY, T_ENTRY_PRICE, T_EXIT,
                                                 T_EXIT_PRICE, T_PNL, T_REASON, T_SIZE, T_SYMBOL)
from utils.engine.metrics import drawdown_curve

PRICE_FIELDS = ("open", "high", "low", "close")


class NoDataInRange(ValueError):
    def __init__(self, symbol: str, start_ns: int, end_ns: int):
        self.symbol = symbol
        super().__init__(f"no bars for symbol {symbol!r} between {iso_time(start_ns)} "
                         f"and {iso_time(end_ns)}")


class TradeRecord(NamedTuple):
    symbol: str
    entry_time: str        # ISO 8601, UTC
    exit_time: str         # last bar's time for an open trade
    entry_price: float
    exit_price: float
    size: float            # shares, negative for a short
    pnl: float
    return_pct: float      # fraction
    commission: float
    is_open: bool
    direction: str         # long | short
    exit_reason: str       # signal | stop_loss | take_profit | trailing_stop | open


@dataclass(frozen=True)
class BacktestReport:
    metrics: dict[str, float]
    equity_times: np.ndarray    # int64 ns, from the first bar at or after start_ns
    equity: np.ndarray
    drawdown: np.ndarray        # positive fractions below the running peak
    trades: list[TradeRecord]
    per_symbol: dict[str, dict[str, float]]
    warmup_bars: int


def iso_time(time_ns: int) -> str:
    """Same format as the equity curve: '2024-01-02' for daily bars, full ISO otherwise."""
    return format_time(time_ns)


def _checked_times(symbol: str, series: Mapping[str, Any]) -> np.ndarray:
    times = np.asarray(series["time"], dtype=np.int64)
    if times.ndim != 1 or np.any(np.diff(times) <= 0):
        raise ValueError(f"bars for {symbol!r} must have strictly increasing 'time'")
    for field in ("open", "close"):
        if field not in series:
            raise ValueError(f"bars for {symbol!r} have no '{field}'")
    for field in PRICE_FIELDS + ("volume",):
        if field in series and len(series[field]) != len(times):
            raise ValueError(f"bars for {symbol!r}: '{field}' and 'time' lengths differ")
    return times


def _forward_fill(panel: np.ndarray) -> np.ndarray:
    missing = np.isnan(panel)
    if not missing.any():
        return panel
    rows = np.where(missing, 0, np.arange(panel.shape[0])[:, None])
    np.maximum.accumulate(rows, axis=0, out=rows)
    return panel[rows, np.arange(panel.shape[1])]


def raw_panels(symbols: list[str], bars: Mapping[str, Mapping[str, Any]], times: dict[str, np.ndarray],
                calendar: np.ndarray, consume: bool = False,
                released: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    """(time x symbols) panels of the stored values, NaN where a symbol has no bar (or no field).
    ``consume``: each field is deleted from ``bars``' per-symbol dicts once it is in its panel, so
    a caller holding no other reference to the columns has one field's copy at a time, not two."""
    fields = PRICE_FIELDS + ("volume",)
    kept = {symbol: int(np.searchsorted(times[symbol], calendar[-1], side="right")) for symbol in symbols}
    if not all(kept[symbol] == len(calendar) for symbol in symbols):
        return scattered_panels(symbols, bars, times, calendar, kept, consume, released)
    panels = {}
    for field in fields:  # every symbol has every bar: stack the columns
        panels[field] = np.ascontiguousarray(np.array([  # (symbols, time) rows, then one transposing copy
            np.asarray(bars[symbol][field], dtype=np.float64)[:len(calendar)] if field in bars[symbol]
            else np.full(len(calendar), np.nan) for symbol in symbols]).T)
        if consume:
            _drop_field(bars, symbols, field, released)
    return panels


def _drop_field(bars: Mapping[str, Any], symbols: list[str], field: str, released: Callable[[], None] | None) -> None:
    for symbol in symbols:
        bars[symbol].pop(field, None)
    if released is not None:
        released()


def scattered_panels(symbols: list[str], bars: Mapping[str, Mapping[str, Any]], times: dict[str, np.ndarray],
                     calendar: np.ndarray, kept: dict[str, int], consume: bool = False,
                     released: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    """``raw_panels`` for any calendars: each symbol's first ``kept`` bars put on their calendar rows."""
    rows = {symbol: np.searchsorted(calendar, times[symbol][:kept[symbol]]) for symbol in symbols}
    raw = {}
    for field in PRICE_FIELDS + ("volume",):
        raw[field] = np.full((len(calendar), len(symbols)), np.nan)
        for column, symbol in enumerate(symbols):
            if field in bars[symbol]:  # high/low/volume are optional; absent ones stay NaN
                raw[field][rows[symbol], column] = np.asarray(bars[symbol][field], dtype=np.float64)[:kept[symbol]]
        if consume:
            _drop_field(bars, symbols, field, released)
    return raw


def _calendar(times: dict[str, np.ndarray], end_ns: int) -> np.ndarray:
    """The union of the symbols' bar times up to ``end_ns`` (one symbol's times when all share them)."""
    arrays = list(times.values())
    first = arrays[0]
    if all(array.shape == first.shape and np.array_equal(array, first) for array in arrays[1:]):
        return first[:int(np.searchsorted(first, end_ns, side="right"))]
    return np.unique(np.concatenate([array[array <= end_ns] for array in arrays]))


def _aligned_panels(symbols: list[str], bars: Mapping[str, Mapping[str, Any]], times: dict[str, np.ndarray],
                    calendar: np.ndarray, consume: bool = False,
                    released: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    raw = raw_panels(symbols, bars, times, calendar, consume, released)
    close = _forward_fill(raw["close"])
    panels = {"close": close}
    for field in ("open", "high", "low"):
        missing = np.isnan(raw[field])  # missing bar: flat at the last close
        panels[field] = np.where(missing, close, raw[field]) if missing.any() else raw[field]
    panels["volume"] = np.nan_to_num(raw["volume"], nan=0.0)
    return panels


def _per_symbol_summary(symbols: list[str], output: BacktestOutput, sleeve_capital: float,
                        shared_cash: bool) -> dict[str, dict[str, float]]:
    table = output.trade_table
    column = table[:, T_SYMBOL].astype(np.int64)
    closed = table[:, T_REASON] != OPEN_REASON
    count = len(symbols)
    closed_count = np.bincount(column[closed], minlength=count)
    wins = np.bincount(column[closed & (table[:, T_PNL] > 0)], minlength=count)
    open_count = np.bincount(column[~closed], minlength=count)
    pnl = np.bincount(column, weights=table[:, T_PNL], minlength=count)
    exposure = (output.positions != 0).mean(axis=0)
    summary = {}
    for index, symbol in enumerate(symbols):
        row = {"num_trades": float(closed_count[index]), "open_trades": float(open_count[index]),
               "total_pnl": float(pnl[index]),
               "win_rate": float(wins[index] / closed_count[index]) if closed_count[index] else 0.0,
               "exposure": float(exposure[index])}
        if not shared_cash:  # a sleeve of its own: its return is meaningful alone
            final = float(output.sleeve_equity[-1, index])
            row.update(total_return=final / sleeve_capital - 1.0, final_equity=final)
        summary[symbol] = row
    return summary


@dataclass(frozen=True)
class AlignedBars:
    symbols: list[str]
    calendar: np.ndarray               # int64 ns, from warm-up to end
    panels: dict[str, np.ndarray]      # field -> (time, symbols)
    start_index: int                   # first row at or after start_ns
    warmup: int


def align_bars(spec: StrategySpec, bars: Mapping[str, Mapping[str, Any]], start_ns: int,
               end_ns: int, consume: bool = False, released: Callable[[], None] | None = None) -> AlignedBars:
    """Check and align per-symbol bars on their union calendar, keeping the warm-up rows.
    ``consume``: the price and volume columns are deleted from ``bars``' per-symbol dicts as they
    are copied into the panels, and ``released()`` is called after each (to hand the freed memory
    back to the OS), so a symbol shard's peak holds about one copy of its bars, not two."""
    if not bars:
        raise ValueError("no symbols to backtest")
    if start_ns > end_ns:
        raise ValueError("start must not be after end")
    symbols = list(bars)
    times = {symbol: _checked_times(symbol, bars[symbol]) for symbol in symbols}
    for symbol in symbols:
        if not np.any((times[symbol] >= start_ns) & (times[symbol] <= end_ns)):
            raise NoDataInRange(symbol, start_ns, end_ns)

    calendar = _calendar(times, end_ns)
    panels = _aligned_panels(symbols, bars, times, calendar, consume, released)
    warmup = warmup_bars(spec)
    start_row = int(np.searchsorted(calendar, start_ns, side="left"))
    first_row = max(0, start_row - warmup)
    calendar = calendar[first_row:]
    panels = {field: panel[first_row:] for field, panel in panels.items()}
    start_index = start_row - first_row

    return AlignedBars(symbols, calendar, panels, start_index, warmup)


def simulate_spec(spec: StrategySpec, aligned: AlignedBars, initial_capital: float, commission_rate: float,
                  progress: Callable[[float], None] | None = None, backend: Backend | None = None) -> BacktestOutput:
    """Signals and simulation of one parameter set (no grid) over aligned bars."""
    return simulate_panels(spec, aligned.panels, aligned.start_index, initial_capital, commission_rate, progress,
                           backend=backend)


def simulate_panels(spec: StrategySpec, panels: Mapping[str, np.ndarray], start: int, initial_capital: float,
                    commission_rate: float, progress: Callable[[float], None] | None = None,
                    targets: np.ndarray | None = None, backend: Backend | None = None) -> BacktestOutput:
    """One parameter set over (time x symbols) ``panels`` from row ``start``: the single run, and
    the sweep's rebalancing combinations and walk-forward windows. On a GPU ``backend`` the sleeves
    run as the CUDA sleeve kernel (bit-identical; ``output.device`` says so); signals and
    rebalancing strategies stay on the host."""
    if targets is None:
        targets = target_positions(np, spec, panels, start)
    config = spec.simulation_config(commission_rate)
    if spec.is_portfolio:
        return simulate_rebalancing(panels["open"], panels["close"], targets, initial_capital, config, start)
    fractions = scaled_size_fractions(spec, size_fractions(spec, panels["close"]), panels.get(POLICY_POSITIONS),
                                      targets)
    if backend is not None and backend.is_gpu:
        from utils.engine.cuda.sleeve_kernels import simulate_portfolio_on_device

        output = simulate_portfolio_on_device(panels["open"], panels["high"], panels["low"], panels["close"], targets,
                                              initial_capital, config, start, size_fraction=fractions,
                                              device_id=backend.device_id)
        if progress is not None:
            progress(1.0)
        return replace(output, device=backend.label)
    return simulate_portfolio(panels["open"], panels["close"], targets, initial_capital, start_index=start,
                              progress=progress, high=panels["high"], low=panels["low"], config=config,
                              size_fraction=fractions)


def trade_records(table: np.ndarray, symbols: list[str], calendar: np.ndarray) -> list[TradeRecord]:
    """The trade table as records, built column-wise (thousands of trades cost a few ms)."""
    if len(table) == 0:
        return []
    times = format_times(calendar)
    pnl, return_pct, commission = trade_pnl(table)
    reasons = table[:, T_REASON].astype(np.int64)
    size = table[:, T_SIZE]
    return list(map(TradeRecord._make, zip(
        [symbols[i] for i in table[:, T_SYMBOL].astype(np.int64).tolist()],
        [times[i] for i in table[:, T_ENTRY].astype(np.int64).tolist()],
        [times[i] for i in table[:, T_EXIT].astype(np.int64).tolist()],
        table[:, T_ENTRY_PRICE].tolist(), table[:, T_EXIT_PRICE].tolist(), size.tolist(), pnl.tolist(),
        return_pct.tolist(), commission.tolist(), (reasons == OPEN_REASON).tolist(),
        np.where(size > 0, "long", "short").tolist(), [EXIT_REASONS[r] for r in reasons.tolist()])))


def report_of(spec: StrategySpec, aligned: AlignedBars, output: BacktestOutput,
              initial_capital: float) -> BacktestReport:
    calendar, symbols = aligned.calendar, aligned.symbols
    trades = trade_records(output.trade_table, symbols, calendar)
    return BacktestReport(
        metrics=output.metrics(spec.periods_per_year, initial_capital),
        equity_times=calendar[output.start_index:].copy(), equity=output.equity,
        drawdown=drawdown_curve(output.equity), trades=trades,
        per_symbol=_per_symbol_summary(symbols, output, initial_capital / len(symbols), spec.is_portfolio),
        warmup_bars=aligned.warmup)


def run_backtest(backend: Backend, spec: StrategySpec, bars: Mapping[str, Mapping[str, Any]],
                 start_ns: int, end_ns: int, initial_capital: float, commission_rate: float,
                 progress: Callable[[float], None] | None = None) -> BacktestReport:
    """Backtest ``spec`` (one parameter set) on ``bars`` (symbol -> {'time' ns, 'open', 'high',
    'low', 'close', 'volume'}). Signals run on the host (numba); the sleeves run on ``backend``'s
    GPU when it has one (``simulate_panels``)."""
    aligned = align_bars(spec, bars, start_ns, end_ns)
    output = simulate_spec(spec, aligned, initial_capital, commission_rate, progress, backend=backend)
    return report_of(spec, aligned, output, initial_capital)
