"""PortfolioService's live risk limits: SetRiskLimits stores a portfolio (weights, sectors, the
prices it was set at, lookback, limits) in Redis; WatchRisk answers its state, then re-evaluates it
on every tick of its symbols (``services/live_feed.py``: the RealTime path's published ticks) with
``utils.engine.risk.limits``. In the server process, no queue: one evaluation is a few vector
operations over the lookback. Mixed into ``services.portfolio_service.PortfolioServicer``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from api_proto import portfolio_pb2
from services import portfolio_requests as checks
from services import validation
from services.errors import invalid, not_found
from utils.data import keys
from utils.data.store import SymbolNotFound
from utils.alerts import publish_alert
from utils.data.timeutil import format_time
from utils.engine.factors.forward_returns import forward_fill
from utils.engine.risk.limits import LIMITS, LimitState, evaluate_limits
from utils.tasks.factor_panels import aligned_bars

DEFAULT_LOOKBACK = 250
MIN_LOOKBACK = 20
MAX_LOOKBACK = 5000
PORTFOLIO_TTL_SECONDS = 30 * 24 * 3600


@dataclass
class LivePortfolio:
    """A stored portfolio with its lookback closes loaded, and the latest price per symbol."""

    portfolio_id: str
    symbols: list[str]
    weights: np.ndarray
    sector_of: list[str | None]
    set_prices: np.ndarray
    limits: dict[str, float | None]
    history: np.ndarray  # (lookback, N) daily closes, carried forward
    current: np.ndarray  # (N,) latest prices

    def evaluate(self) -> LimitState:
        return evaluate_limits(self.history, self.current, self.set_prices, self.weights, self.symbols,
                               self.sector_of, self.limits)


def _limits(request) -> dict[str, float | None]:
    chosen = {}
    for name in LIMITS:
        if request.limits.HasField(name):
            chosen[name] = validation.finite(f"limits.{name}", getattr(request.limits, name), 0.0)
        else:
            chosen[name] = None
    if all(value is None for value in chosen.values()):
        raise invalid("limits", f"set at least one of {', '.join(LIMITS)}")
    return chosen


class RiskLimitRPCs:
    """Needs ``self.store``, ``self.feed`` (LiveFeed), ``self.metrics`` and ``self.settings``."""

    def SetRiskLimits(self, request, context):
        portfolio_id = checks.portfolio_id(request.portfolio_id)
        if not request.weights:
            raise invalid("weights", "is required (symbol -> weight of the portfolio now)")
        weights = checks.weight_map("weights", dict(request.weights))
        symbols = validation.symbols("weights", sorted(weights), self.settings.max_symbols_per_request)
        sectors = checks.sector_map(dict(request.sectors), weights, "the weights' symbols")
        lookback = request.lookback_days or DEFAULT_LOOKBACK
        if not MIN_LOOKBACK <= lookback <= MAX_LOOKBACK:
            raise invalid("lookback_days", f"must be {MIN_LOOKBACK}..{MAX_LOOKBACK} (0 = {DEFAULT_LOOKBACK}), "
                                           f"got {lookback}")
        limits = _limits(request)
        prices = {}
        for symbol in symbols:
            last = self.store.last_price(symbol)
            if last is None:
                raise not_found(f"symbol {symbol!r} has no stored bars or ticks; import its bars with "
                                f"MarketDataService.ImportBars first")
            prices[symbol] = last[1]
        definition = {"weights": {s: weights[s] for s in symbols}, "sectors": sectors, "set_prices": prices,
                      "lookback_days": lookback, "limits": limits, "set_at": time.time()}
        self.store.redis.set(keys.risk_portfolio(portfolio_id), json.dumps(definition), ex=PORTFOLIO_TTL_SECONDS)
        live = self._live(portfolio_id, definition, prices)  # the latest prices are the ones just read
        return self._update(live, live.evaluate(), "")

    def WatchRisk(self, request, context) -> Iterator[portfolio_pb2.RiskUpdate]:
        portfolio_id = checks.portfolio_id(request.portfolio_id)
        raw = self.store.redis.get(keys.risk_portfolio(portfolio_id))
        if raw is None:
            raise not_found(f"no live portfolio {portfolio_id!r}; define it with SetRiskLimits "
                            f"(portfolios expire {PORTFOLIO_TTL_SECONDS // 86400} days after they are set)")
        live = self._live(portfolio_id, json.loads(raw))
        breached: set[str] = set()
        state = live.evaluate()
        self._count_new_breaches(live.portfolio_id, state, breached)
        yield self._update(live, state, "")
        position = {symbol: index for index, symbol in enumerate(live.symbols)}
        for symbol, update in self.feed.follow(live.symbols, context):
            if not update["price"]:
                continue
            live.current[position[symbol]] = update["price"][-1]
            state = live.evaluate()
            self._count_new_breaches(live.portfolio_id, state, breached)
            yield self._update(live, state, symbol, update["timestamp"][-1])

    def _count_new_breaches(self, portfolio_id: str, state: LimitState, breached: set[str]) -> None:
        """Count (and announce to the gateways' alert channel) each limit once per stream when the
        portfolio enters a breach of it."""
        now = {breach.limit for breach in state.breaches}
        for breach in state.breaches:
            if breach.limit not in breached:
                breached.add(breach.limit)  # once per limit, as before
                self.metrics.risk_limit_breaches.labels(limit=breach.limit).inc()
                publish_alert(self.store.redis, "risk_breach", portfolio_id=portfolio_id, limit=breach.limit,
                              value=float(breach.value), threshold=float(breach.threshold), message=breach.message)
        breached.clear()
        breached.update(now)

    def _live(self, portfolio_id: str, definition: dict[str, Any],
              latest: dict[str, float] | None = None) -> LivePortfolio:
        """The portfolio with its lookback closes; ``latest``: prices already read (else read now)."""
        symbols = list(definition["weights"])
        lookback = int(definition["lookback_days"])
        now = time.time_ns()
        try:
            aligned = aligned_bars(self.store, symbols, 0, now, 0, ("close",))
        except SymbolNotFound as exc:
            raise not_found(f"live portfolio {portfolio_id!r}: {exc}") from None
        history = forward_fill(aligned.close[:aligned.factor_rows])[-lookback:]
        if latest is None:
            latest = {}
            for symbol in symbols:
                last = self.store.last_price(symbol)
                latest[symbol] = definition["set_prices"][symbol] if last is None else last[1]
        current = [latest[symbol] for symbol in symbols]
        return LivePortfolio(portfolio_id, symbols, np.array([definition["weights"][s] for s in symbols]),
                             [definition["sectors"].get(s) for s in symbols],
                             np.array([definition["set_prices"][s] for s in symbols]),
                             definition["limits"], history, np.array(current, dtype=np.float64))

    @staticmethod
    def _update(live: LivePortfolio, state: LimitState, symbol: str, timestamp: str | None = None
                ) -> portfolio_pb2.RiskUpdate:
        return portfolio_pb2.RiskUpdate(
            portfolio_id=live.portfolio_id, time=timestamp or format_time(time.time_ns()), symbol=symbol,
            var_95=_finite(state.var_95), drawdown=_finite(state.drawdown), max_weight=_finite(state.max_weight),
            max_sector=_finite(state.max_sector),
            weights={s: _finite(w) for s, w in zip(live.symbols, state.weights)},
            breaches=[portfolio_pb2.LimitBreach(limit=b.limit, value=b.value, threshold=b.threshold,
                                                message=b.message) for b in state.breaches])


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else float("nan")
