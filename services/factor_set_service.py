"""FactorService's many-factor RPCs: ComputeFactors and CombineFactors (task type ``factor_set``:
a job that stores a factor set under its id), GetFactorSet, EvaluateFactors (task type
``factor_eval``) and GetFactorEvaluation. Mixed into ``services.factor_service.FactorServicer``;
validates and queues only (``utils/tasks/factor_sets.py``, ``utils/tasks/factor_eval.py`` compute)."""
from __future__ import annotations

import math
from typing import Any

import grpc
import numpy as np

from api_proto import factor_pb2, jobs_pb2
from services import factor_requests as checks
from services import validation
from services.errors import ServiceError, invalid
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
GIB = 1024 ** 3


def panel_size_problem(factors: int, symbols: int, dates: int, limit: int) -> str | None:
    """The message when factors x symbols x dates float64 values exceed ``limit`` bytes (None if not)."""
    size = factors * symbols * dates * 8
    if size <= limit:
        return None
    return (f"factors x symbols x dates x 8 bytes = {factors:,} x {symbols:,} x {dates:,} x 8 = {size / GIB:.1f} GiB, "
            f"above the {limit / GIB:g} GiB limit of one job; split the request: fewer factors per job (a subset "
            f"of names, or the expressions over several requests), fewer symbols per job, or a shorter period")


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


class FactorSetRPCs:
    """Needs ``self.queue``, ``self.store`` and ``self.settings`` (FactorServicer's)."""

    # factors x symbols x dates x 8 bytes of one factor_set / factor_eval job (not a setting; the
    # proto comments of ComputeFactors, CombineFactors and EvaluateFactors name it)
    MAX_PANEL_BYTES = 4 * GIB

    def _check_size(self, factors: int, symbols: list[str], start_ns: int, end_ns: int) -> None:
        """INVALID_ARGUMENT when the job's panels would exceed MAX_PANEL_BYTES. Dates: the union of
        the symbols' stored bar dates in [start, end], read only when the stored rows could exceed it."""
        infos = self.store.info_many(symbols)
        rows = sum(info.rows for info in infos.values() if info is not None)
        if panel_size_problem(factors, len(symbols), rows, self.MAX_PANEL_BYTES) is None:
            return
        times = [t[(t >= start_ns) & (t <= end_ns)] for t in self.store.stored_times(symbols).values()]
        dates = int(np.unique(np.concatenate(times + [np.empty(0, np.int64)])).size)
        self._check_counts(factors, len(symbols), dates)

    def _check_counts(self, factors: int, symbols: int, dates: int) -> None:
        problem = panel_size_problem(factors, symbols, dates, self.MAX_PANEL_BYTES)
        if problem:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, problem)

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
        self._check_size(len(names), symbols, start_ns, end_ns)
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
        self._check_counts(len(names), len(meta["symbols"]), dates)
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
            self._check_counts(len(names), len(meta["symbols"]), len(meta["times_ns"]))
            payload = {"factor_set": meta["id"], "names": names, "expressions": None}
            what = meta["id"]
        else:
            symbols, start_ns, end_ns = self._universe(request)
            names, expressions = checks.expressions_or_library(list(request.expressions), request.library,
                                                               list(request.names))
            require_bars_in_range(self.store, symbols, start_ns, end_ns, request.start_time, request.end_time)
            self._check_size(len(names), symbols, start_ns, end_ns)
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
