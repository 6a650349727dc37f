"""FactorService's many-factor RPCs: ComputeFactors and CombineFactors (task type ``factor_set``:
a job that stores a factor set under its id), GetFactorSet, EvaluateFactors (task type
``factor_eval``) and GetFactorEvaluation. Mixed into ``services.factor_service.FactorServicer``;
validates and queues only (``utils/tasks/factor_sets.py``, ``utils/tasks/factor_eval.py`` compute)."""
from __future__ import annotations

import math
from typing import Any

from api_proto import factor_pb2, jobs_pb2
from services import factor_requests as checks
from services import validation
from services.errors import invalid
from services.job_views import completed_result, job_id_field
from services.stored_data import require_bars_in_range
from utils.data.timeutil import format_time
from utils.queue.jobs import JobSpec, new_job_id

SET_TASK_TYPE = "factor_set"
EVAL_TASK_TYPE = "factor_eval"
COMBINE_METHODS = ("ic_weighted", "regression")
DEFAULT_WINDOW = 60
MAX_WINDOW = 2520
FOLLOW = "follow it with JobService.WatchJob"


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


class FactorSetRPCs:
    """Needs ``self.queue``, ``self.store`` and ``self.settings`` (FactorServicer's)."""

    def _universe(self, request) -> tuple[list[str], int, int]:
        symbols = validation.symbols("symbols", list(request.symbols), self.settings.max_symbols_per_request)
        if len(symbols) < 2:
            raise invalid("symbols", "must name at least two symbols (factors are compared across them)")
        start_ns, end_ns = validation.time_range("start_time", request.start_time, "end_time", request.end_time)
        return symbols, start_ns, end_ns

    def _enqueue(self, task_type: str, payload: dict[str, Any], meta: dict[str, Any]) -> jobs_pb2.JobHandle:
        job_id = new_job_id(task_type)
        self.queue.enqueue(JobSpec(task_type, payload, "normal", self.settings.job_max_attempts, meta), job_id)
        return jobs_pb2.JobHandle(job_id=job_id, status=jobs_pb2.PENDING, message="queued")

    # ------------------------------------------------------------ factor sets
    def ComputeFactors(self, request, context):
        symbols, start_ns, end_ns = self._universe(request)
        names, expressions = checks.expressions_or_library(list(request.expressions), request.library,
                                                           list(request.names))
        require_bars_in_range(self.store, symbols, start_ns, end_ns, request.start_time, request.end_time)
        payload = {"mode": "compute", "symbols": symbols, "start_ns": start_ns, "end_ns": end_ns,
                   "names": names, "expressions": expressions}
        return self._enqueue(SET_TASK_TYPE, payload, {
            "symbols": symbols[:20], "start_time": format_time(start_ns), "end_time": format_time(end_ns),
            "factors": len(names), "library": request.library})

    def CombineFactors(self, request, context):
        meta = checks.stored_set(self.queue, self.store.redis, "factor_set_id", request.factor_set_id)
        names = checks.subset(list(request.names), meta["names"], f"factor set {meta['id']}")
        method = request.method or "ic_weighted"
        if method not in COMBINE_METHODS:
            raise invalid("method", f"must be one of {', '.join(COMBINE_METHODS)}, got {method[:40]!r}")
        window = request.window or DEFAULT_WINDOW
        if not 1 <= window <= MAX_WINDOW:
            raise invalid("window", f"must be 1..{MAX_WINDOW} dates (0 = {DEFAULT_WINDOW}), got {window}")
        period = request.period or 1
        if not 1 <= period <= checks.MAX_PERIOD:
            raise invalid("period", f"must be 1..{checks.MAX_PERIOD} rows (0 = 1), got {period}")
        dates = len(meta["times_ns"])
        if period + window >= dates:
            raise invalid("window", f"window {window} + period {period} leaves no date to combine: factor set "
                                    f"{meta['id']} has {dates} dates (the first composite date is window + period)")
        payload = {"mode": "combine", "source": meta["id"], "names": names, "method": method, "window": window,
                   "period": period}
        return self._enqueue(SET_TASK_TYPE, payload, {"source": meta["id"], "method": method, "factors": len(names)})

    def GetFactorSet(self, request, context):
        job_id = job_id_field("job_id", request.job_id, SET_TASK_TYPE)
        _, result = completed_result(self.queue, job_id, SET_TASK_TYPE, FOLLOW)
        return factor_pb2.FactorSetInfo(
            job_id=job_id, names=result["names"], times_count=result["times_count"],
            first_time=result["first_time"], last_time=result["last_time"], symbols=result["symbols"],
            expressions=result.get("expressions", []), source_factor_set_id=result.get("source_factor_set_id", ""),
            method=result.get("method", ""), weight_names=result.get("weight_names", []),
            last_weights=[_nan(value) for value in result.get("last_weights", [])],
            compute_seconds=result.get("compute_seconds", 0.0))

    # ------------------------------------------------------------ evaluation
    def EvaluateFactors(self, request, context):
        payload: dict[str, Any]
        if request.factor_set_id:
            if request.expressions or request.library:
                raise invalid("factor_set_id", "give one of expressions, library or factor_set_id")
            for field in ("symbols", "start_time", "end_time"):
                if getattr(request, field):
                    raise invalid(field, "must be empty with factor_set_id (the set's symbols and dates are used)")
            meta = checks.stored_set(self.queue, self.store.redis, "factor_set_id", request.factor_set_id)
            names = checks.subset(list(request.names), meta["names"], f"factor set {meta['id']}")
            payload = {"factor_set": meta["id"], "names": names, "expressions": None}
            what = meta["id"]
        else:
            symbols, start_ns, end_ns = self._universe(request)
            names, expressions = checks.expressions_or_library(list(request.expressions), request.library,
                                                               list(request.names))
            require_bars_in_range(self.store, symbols, start_ns, end_ns, request.start_time, request.end_time)
            payload = {"symbols": symbols, "start_ns": start_ns, "end_ns": end_ns, "names": names,
                       "expressions": expressions}
            what = request.library or "expressions"
        from utils.engine.factors.scoring import RANK_BY
        if request.rank_by and request.rank_by not in RANK_BY:
            raise invalid("rank_by", f"must be one of {', '.join(RANK_BY)}, got {request.rank_by[:40]!r}")
        payload.update(periods=checks.periods(list(request.periods)), quantiles=checks.quantiles(request),
                       rank_by=request.rank_by or "ic_mean", **checks.cleaning(request))
        return self._enqueue(EVAL_TASK_TYPE, payload, {"source": what, "factors": len(payload["names"])})

    def GetFactorEvaluation(self, request, context):
        job_id = job_id_field("job_id", request.job_id, EVAL_TASK_TYPE)
        _, result = completed_result(self.queue, job_id, EVAL_TASK_TYPE, FOLLOW)
        rows = [factor_pb2.FactorEvaluationRow(
            name=row["name"], expression=row["expression"], error=row["error"],
            loss_fraction=_nan(row["loss_fraction"]),
            periods=[factor_pb2.FactorScore(**{key: (_nan(value) if key != "period" else value)
                                               for key, value in stats.items()}) for stats in row["periods"]])
            for row in result["rows"]]
        return factor_pb2.FactorEvaluationResult(
            job_id=job_id, rows=rows, rank_by=result["rank_by"], correlation_names=result["correlation_names"],
            correlation=[_nan(value) for value in result["correlation"]],
            compute_seconds=result.get("compute_seconds", 0.0))
