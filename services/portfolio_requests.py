"""PortfolioService request checks: each names the field it rejects (INVALID_ARGUMENT) and turns a
request into the job payload ``utils/tasks/portfolio.py`` or ``utils/tasks/risk.py`` reads."""
from __future__ import annotations

import math
import re
from typing import Any

from services import validation
from services.errors import invalid

OBJECTIVES = ("min_volatility", "max_sharpe", "efficient_risk", "efficient_return", "max_quadratic_utility",
              "hrp", "risk_parity", "min_cvar")
EXPECTED_RETURNS = ("mean_historical", "ema_historical", "capm")
RISK_MODELS = ("sample_cov", "ledoit_wolf", "exp_cov", "semicovariance")
LINKAGES = ("single", "complete", "average", "weighted", "centroid", "median", "ward")
ALLOCATION_METHODS = ("greedy", "lp")
MC_METHODS = ("normal", "bootstrap")
MAX_SCENARIOS = 10_000_000
MIN_SCENARIOS = 100
PORTFOLIO_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")


def choice(field: str, value: str, allowed: tuple[str, ...], default: str) -> str:
    value = value or default
    if value not in allowed:
        raise invalid(field, f"must be one of {', '.join(allowed)}, got {value[:40]!r}")
    return value


def optional_number(request, field: str, minimum: float | None = None, maximum: float | None = None,
                    strict_minimum: bool = False) -> float | None:
    if not request.HasField(field):
        return None
    return validation.finite(field, getattr(request, field), minimum, maximum, strict_minimum)


def weight_map(field: str, values: dict[str, float], symbols: list[str] | None = None) -> dict[str, float]:
    for symbol, value in values.items():
        validation.symbol(f"{field} key", symbol)
        if not math.isfinite(value):
            raise invalid(field, f"the value of {symbol!r} must be a finite number, got {value}")
        if symbols is not None and symbol not in symbols:
            raise invalid(field, f"names {symbol!r}, which is not one of symbols")
    return dict(values)


def sector_map(sectors: dict[str, str], symbols: list[str] | dict[str, Any], which: str = "symbols"
               ) -> dict[str, str]:
    """symbol -> sector name, each symbol one of ``symbols`` (named ``which`` in the message)."""
    for symbol, name in sectors.items():
        if symbol not in symbols:
            raise invalid("sectors", f"names {symbol!r}, which is not one of {which}")
        if not name or len(name) > 64:
            raise invalid("sectors", f"the sector of {symbol!r} must be a name of 1..64 characters")
    return sectors


def _sectors(request, symbols: list[str]) -> dict[str, Any]:
    sectors = sector_map(dict(request.sectors), symbols)
    names = set(sectors.values())
    bounds = {}
    for field in ("sector_lower", "sector_upper"):
        values = dict(getattr(request, field))
        for name, value in values.items():
            if name not in names:
                raise invalid(field, f"names sector {name[:40]!r}, which no symbol has in sectors")
            validation.finite(field, value)
        bounds[field] = values
    return {"sectors": sectors, **bounds}


def _inline(request, symbols: list[str]) -> dict[str, Any] | None:
    if not request.HasField("inline_model"):
        return None
    model, n = request.inline_model, len(symbols)
    if len(model.expected_returns) != n:
        raise invalid("inline_model.expected_returns", f"has {len(model.expected_returns)} values; expected one per "
                                                       f"symbol ({n})")
    if len(model.covariance) != n * n:
        raise invalid("inline_model.covariance", f"has {len(model.covariance)} values; expected len(symbols)^2 = "
                                                 f"{n * n} (row-major)")
    values = list(model.expected_returns) + list(model.covariance)
    if not all(math.isfinite(v) for v in values):
        raise invalid("inline_model", "holds a NaN or infinite number")
    cov = model.covariance
    for i in range(n):
        if cov[i * n + i] < 0:
            raise invalid("inline_model.covariance", f"has a negative variance for {symbols[i]!r}")
        for j in range(i):
            if not math.isclose(cov[i * n + j], cov[j * n + i], rel_tol=1e-9, abs_tol=1e-15):
                raise invalid("inline_model.covariance", f"is not symmetric ({symbols[i]!r}, {symbols[j]!r})")
    return {"expected_returns": list(model.expected_returns), "covariance": list(cov)}


def optimize_payload(request, max_symbols: int) -> dict[str, Any]:
    symbols = validation.symbols("symbols", list(request.symbols), max_symbols)
    if len(symbols) < 2:
        raise invalid("symbols", "must name at least two symbols to build a portfolio")
    objective = choice("objective", request.objective, OBJECTIVES, "min_volatility")
    inline = _inline(request, symbols)
    payload: dict[str, Any] = {"symbols": symbols, "objective": objective, "inline": inline,
                               "start_ns": None, "end_ns": None}
    if inline is None:
        payload["start_ns"], payload["end_ns"] = validation.time_range(
            "start_time", request.start_time, "end_time", request.end_time)
    elif objective in ("hrp", "min_cvar"):
        raise invalid("inline_model", f"{objective} works on return histories; give start_time/end_time instead")
    elif request.portfolio_value:
        raise invalid("portfolio_value", "needs the latest stored closes; give start_time/end_time, not inline_model")
    required = {"efficient_risk": "target_volatility", "efficient_return": "target_return"}.get(objective)
    if required and not request.HasField(required):
        raise invalid(required, f"is required by objective {objective}")
    lower = optional_number(request, "weight_lower", -1.0)
    upper = optional_number(request, "weight_upper", None, None)
    lower = 0.0 if lower is None else lower
    upper = 1.0 if upper is None else upper
    if upper <= lower:
        raise invalid("weight_upper", f"must be above weight_lower ({lower}), got {upper}")
    if objective in ("risk_parity", "hrp") and lower < 0:
        raise invalid("weight_lower", f"{objective} is long-only; weight_lower must be >= 0")
    frequency = request.frequency if request.HasField("frequency") else None
    if frequency is not None and not 1 <= frequency <= 100_000:
        raise invalid("frequency", f"must be 1..100000 periods a year, got {frequency}")
    rounding = request.rounding if request.HasField("rounding") else None
    if rounding is not None and not 1 <= rounding <= 15:
        raise invalid("rounding", f"must be 1..15 decimal places, got {rounding}")
    for field in ("ema_span", "cov_span"):
        if request.HasField(field) and not 2 <= getattr(request, field) <= 100_000:
            raise invalid(field, f"must be 2..100000 periods, got {getattr(request, field)}")
    if request.max_turnover and not request.previous_weights:
        raise invalid("max_turnover", "needs previous_weights (the weights the turnover is measured from)")
    if request.market_symbol:
        validation.symbol("market_symbol", request.market_symbol)
    payload.update(
        target_volatility=optional_number(request, "target_volatility", 0.0, strict_minimum=True),
        target_return=optional_number(request, "target_return"),
        risk_aversion=optional_number(request, "risk_aversion", 0.0, strict_minimum=True),
        linkage=choice("linkage", request.linkage, LINKAGES, "single"),
        alpha=optional_number(request, "alpha", 0.0, 1.0, strict_minimum=True),
        expected_returns=choice("expected_returns", request.expected_returns, EXPECTED_RETURNS, "mean_historical"),
        risk_model=choice("risk_model", request.risk_model, RISK_MODELS, "sample_cov"),
        risk_free_rate=validation.finite("risk_free_rate", request.risk_free_rate),
        weight_lower=lower, weight_upper=upper, **_sectors(request, symbols),
        l2_gamma=validation.finite("l2_gamma", request.l2_gamma, 0.0),
        frequency=frequency, previous_weights=weight_map("previous_weights", dict(request.previous_weights), symbols),
        max_turnover=optional_number(request, "max_turnover", 0.0),
        clean=request.clean, cutoff=optional_number(request, "cutoff", 0.0), rounding=rounding,
        portfolio_value=validation.finite("portfolio_value", request.portfolio_value, 0.0),
        allocation_method=choice("allocation_method", request.allocation_method, ALLOCATION_METHODS, "greedy"),
        ema_span=request.ema_span if request.HasField("ema_span") else None,
        cov_span=request.cov_span if request.HasField("cov_span") else None,
        market_symbol=request.market_symbol or None,
        semicovariance_benchmark=optional_number(request, "semicovariance_benchmark"))
    if payload["expected_returns"] != "capm" and request.market_symbol:
        raise invalid("market_symbol", "applies to expected_returns 'capm' only")
    return payload


def risk_payload(request, max_symbols: int) -> dict[str, Any]:
    """The payload of a risk job, without the backtest's equity (the servicer adds it)."""
    payload: dict[str, Any] = {}
    if request.backtest_id:
        if request.weights:
            raise invalid("weights", "give either weights (with start/end) or backtest_id, not both")
        if request.shocks:
            raise invalid("shocks", "apply to weights per symbol; a backtest is assessed as one series")
        payload["backtest_id"] = validation.identifier("backtest_id", request.backtest_id, "backtest")
    else:
        if not request.weights:
            raise invalid("weights", "is required (symbol -> weight), or give backtest_id")
        weights = weight_map("weights", dict(request.weights))
        validation.symbols("weights", sorted(weights), max_symbols)
        if not any(weights.values()):
            raise invalid("weights", "are all 0; nothing to assess")
        payload["weights"] = {symbol: weights[symbol] for symbol in sorted(weights)}
        payload["start_ns"], payload["end_ns"] = validation.time_range(
            "start_time", request.start_time, "end_time", request.end_time)
        payload["shocks"] = weight_map("shocks", dict(request.shocks), list(weights))
    confidences = list(request.confidence) or [0.95, 0.99]
    for index, value in enumerate(confidences):
        validation.finite(f"confidence[{index}]", value, 0.0, 1.0, strict_minimum=True)
    if request.horizon_days < 0 or request.horizon_days > 252:
        raise invalid("horizon_days", f"must be 1..252 days (0 = 1), got {request.horizon_days}")
    scenarios = request.mc_scenarios or 100_000
    if not MIN_SCENARIOS <= scenarios <= MAX_SCENARIOS:
        raise invalid("mc_scenarios", f"must be {MIN_SCENARIOS:,}..{MAX_SCENARIOS:,} (0 = 100,000), got {scenarios:,}")
    if request.benchmark:
        validation.symbol("benchmark", request.benchmark)
    payload.update(confidence=confidences, horizon_days=request.horizon_days or 1, mc_scenarios=scenarios,
                   seed=request.seed if request.HasField("seed") else None,
                   mc_method=choice("mc_method", request.mc_method, MC_METHODS, "normal"),
                   benchmark=request.benchmark or None, device=validation.device("device", request.device))
    return payload


def portfolio_id(value: str) -> str:
    if not PORTFOLIO_ID.match(value or ""):
        raise invalid("portfolio_id", f"{value[:70]!r} must be 1-64 letters, digits or . _ -")
    return value
