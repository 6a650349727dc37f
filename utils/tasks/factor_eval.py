"""Many-factor evaluation job (task type ``factor_eval``, FactorService.EvaluateFactors): each
factor's alphalens statistics per period (``utils.engine.factors.scoring``; a factor that cleaning
rejects gets a row with its error), the rows ranked, and the factors' mean per-date Spearman
correlation. The factors are expressions evaluated on the stored bars (aligned as
``utils/tasks/factor.py`` does) or the factors of a stored factor set."""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from utils.queue.worker import JobContext
from utils.tasks.factor import _number, expression_factors
from utils.tasks.factor_sets import expression_columns, load_aligned, stored_set
from utils.tasks.resources import WorkerResources


def load_factors(store, payload: dict[str, Any], extra_rows: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(closes (T, N), factors (K, T, N), factor rows) of the payload's source."""
    names = payload["names"]
    if payload.get("factor_set"):
        _, aligned, factors = stored_set(store, payload["factor_set"], names, extra_rows)
    else:
        aligned = load_aligned(store, payload["symbols"], payload["start_ns"], payload["end_ns"], extra_rows,
                               expression_columns(payload["expressions"]))
        evaluated = expression_factors(dict(zip(names, payload["expressions"])), aligned)
        factors = np.stack([evaluated[name] for name in names])
    return aligned.close, factors, aligned.factor_rows


def run_evaluation(store, payload: dict[str, Any], progress=lambda fraction, detail=None: None) -> dict[str, Any]:
    from utils.engine.factors.correlation import mean_spearman_correlation
    from utils.engine.factors.scoring import ranked, score_factors
    names, periods = payload["names"], [int(p) for p in payload["periods"]]
    closes, factors, factor_rows = load_factors(store, payload, max(periods))
    progress(0.1, {"stage": "loaded", "factors": len(names)})
    count = len(names)

    def each(done: int, name: str) -> None:
        progress(0.1 + 0.8 * done / count, {"factors_done": done, "factors": count, "last": name[:64]})
    scores = score_factors(closes, dict(zip(names, factors)), periods, each,
                           quantiles=payload["quantiles"], max_loss=payload["max_loss"],
                           filter_zscore=payload.get("filter_zscore") or None,
                           long_short=bool(payload.get("long_short", True)))
    correlation = mean_spearman_correlation(factors[:, :factor_rows])
    progress(0.95, {"stage": "correlation"})
    expressions = dict(zip(names, payload.get("expressions") or [""] * count))
    rank_by = payload.get("rank_by") or "ic_mean"
    rows = [{"name": score.name, "expression": expressions[score.name], "error": score.error,
             "loss_fraction": _number(score.loss_fraction),
             "periods": [{"period": period, **{key: _number(value) for key, value in score.periods[period].items()}}
                         for period in periods] if not score.error else []}
            for score in ranked(scores, periods[0], rank_by)]
    return {"rows": rows, "rank_by": rank_by, "correlation_names": names,
            "correlation": [_number(value) if not math.isnan(value) else None for value in correlation.ravel()]}


def make_factor_eval_handler(resources: WorkerResources):
    def handle(context: JobContext) -> dict[str, Any]:
        started = time.perf_counter()
        result = run_evaluation(resources.bar_store, context.payload, context.progress)
        result.update(device="cpu", compute_seconds=time.perf_counter() - started)
        context.progress(1.0)
        return result
    return handle
