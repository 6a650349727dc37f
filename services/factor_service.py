"""FactorService: validate and queue factor analyses (task type ``factor``), read their results.
Never computes itself: the worker's ``utils/tasks/factor.py`` runs ``analyze_factor``. The
many-factor RPCs (ComputeFactors, EvaluateFactors, CombineFactors) are ``services/factor_set_service.py``."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from api_proto import factor_pb2, factor_pb2_grpc, jobs_pb2
from services import factor_requests as checks
from services import validation
from services.errors import invalid
from services.factor_set_service import FactorSetRPCs
from services.job_views import REPORT_CONTENT_TYPE, completed_result, job_id_field, render_report
from services.stored_data import require_bars_in_range
from utils.data import keys as data_keys
from utils.data.store import BarStore
from utils.data.timeutil import format_time, parse_times
from utils.queue.jobs import JobSpec, new_job_id
from utils.queue.streams import JobQueue

TASK_TYPE = "factor"
DEFAULT_QUANTILES = checks.DEFAULT_QUANTILES
MAX_BINS = checks.MAX_BINS
MAX_GROUP_NAME_CHARS = 128
RANK_TIES = ("", "average", "first")


CALENDAR_BATCH = 64  # symbols whose dates are read per round trip by the calendar check


class FactorServicer(FactorSetRPCs, factor_pb2_grpc.FactorServiceServicer):
    def __init__(self, queue: JobQueue, store: BarStore, settings: Any) -> None:
        self.queue = queue
        self.store = store
        self.settings = settings

    # ------------------------------------------------------------ submission
    def AnalyzeFactor(self, request, context):
        stored_meta = None
        if request.WhichOneof("factor") == "stored":
            request, stored_meta = self._stored_request(request)
        symbols = validation.symbols("symbols", list(request.symbols), self.settings.max_symbols_per_request)
        if len(symbols) < 2:
            raise invalid("symbols", "must name at least two symbols (the factor is compared across them)")
        start_ns, end_ns = validation.time_range("start_time", request.start_time, "end_time", request.end_time)
        options = self._options(request, symbols)
        which = request.WhichOneof("factor")
        if which is None:
            raise invalid("factor", "set exactly one of expression or values")
        expression = checks.expression(request.expression) if which == "expression" else None
        panel = self._panel(request.values, symbols, start_ns, end_ns) if which == "values" else None
        self._require_bars(symbols, start_ns, end_ns, request.start_time, request.end_time,
                           panel[0] if panel is not None else None)
        stored = self._stored_values(request.stored, stored_meta) if which == "stored" else None
        job_id = new_job_id(TASK_TYPE)
        payload = {"symbols": symbols, "start_ns": start_ns, "end_ns": end_ns, "expression": expression,
                   "values": None, **options}
        if panel is not None:
            times, panel_symbols, values = panel
            key = data_keys.factor_values(job_id)
            self.store.redis.set(key, values.astype("<f8").tobytes(), ex=self.queue.result_ttl(TASK_TYPE))
            payload["values"] = {"times_ns": times.tolist(), "symbols": panel_symbols, "key": key}
        if stored is not None:
            payload["values"] = stored
        meta = {"symbols": symbols[:20], "start_time": format_time(start_ns), "end_time": format_time(end_ns),
                "factor": expression[:200] if expression else ("values" if stored is None else
                                                                  f"{stored['set']}:{stored['name']}")}
        self.queue.enqueue(JobSpec(TASK_TYPE, payload, "normal", self.settings.job_max_attempts, meta), job_id)
        return jobs_pb2.JobHandle(job_id=job_id, status=jobs_pb2.PENDING, message="queued")

    def _options(self, request, symbols: list[str]) -> dict[str, Any]:
        periods = checks.periods(list(request.periods))
        quantiles = request.quantiles if request.HasField("quantiles") else DEFAULT_QUANTILES
        if request.bins:
            if not 2 <= request.bins <= MAX_BINS:
                raise invalid("bins", f"must be 2..{MAX_BINS} (or 0 to use quantiles), got {request.bins}")
        elif not 2 <= quantiles <= MAX_BINS:
            raise invalid("quantiles", f"must be 2..{MAX_BINS}, got {quantiles}")
        cleaning = checks.cleaning(request)
        if request.rank_ties not in RANK_TIES:
            raise invalid("rank_ties", f"must be 'average' or 'first' (or empty for 'average'), got "
                                       f"{request.rank_ties[:40]!r}")
        if request.rank_ties == "first" and request.bins:
            raise invalid("rank_ties", "'first' applies to quantiles, not to bins")
        groups = dict(request.groups)
        strangers = sorted(set(groups) - set(symbols))
        if strangers:
            raise invalid("groups", f"names {strangers[0][:40]!r}, which is not one of symbols")
        for symbol, name in groups.items():
            if not name or len(name) > MAX_GROUP_NAME_CHARS:
                raise invalid("groups", f"the group of {symbol!r} must be a name of 1..{MAX_GROUP_NAME_CHARS} "
                                        f"characters")
        if request.group_adjust or request.by_group:
            missing = [symbol for symbol in symbols if symbol not in groups]
            if missing:
                flag = "group_adjust" if request.group_adjust else "by_group"
                raise invalid("groups", f"{flag} needs a group for every symbol; {missing[0]!r} has none")
        return {"periods": periods, "quantiles": None if request.bins else quantiles, "bins": request.bins or None,
                **cleaning, "zero_aware": request.zero_aware,
                "groups": groups, "group_adjust": request.group_adjust, "by_group": request.by_group,
                "equal_weight": request.equal_weight, "rank_ties": request.rank_ties or "average"}

    def _stored_request(self, request) -> tuple[Any, dict[str, Any]]:
        """The request with its symbols and dates defaulted to the stored factor set's."""
        meta = checks.stored_set(self.queue, self.store.redis, "stored.factor_set_id", request.stored.factor_set_id)
        request = type(request).FromString(request.SerializeToString())
        if not request.symbols:
            request.symbols.extend(meta["symbols"])
        strangers = [symbol for symbol in request.symbols if symbol not in set(meta["symbols"])]
        if strangers:
            raise invalid("symbols", f"{strangers[0][:40]!r} is not a symbol of factor set {meta['id']}")
        if not request.start_time:
            request.start_time = format_time(meta["times_ns"][0])
        if not request.end_time:
            request.end_time = format_time(meta["times_ns"][-1])
        return request, meta

    @staticmethod
    def _stored_values(stored, meta: dict[str, Any]) -> dict[str, Any]:
        """The values spec of a stored factor (``utils/tasks/factor.py`` values_factor, subset mode)."""
        name = stored.factor_name or (meta["names"][0] if len(meta["names"]) == 1 else "")
        if name not in meta["names"]:
            raise invalid("stored.factor_name", f"{name[:40]!r} is not a factor of factor set {meta['id']}"
                          if name else f"is empty; factor set {meta['id']} holds {len(meta['names'])} factors")
        return {"times_ns": meta["times_ns"], "symbols": meta["symbols"], "subset": True, "set": meta["id"],
                "name": name, "key": data_keys.factor_set_values(meta["id"], meta["names"].index(name))}

    def _panel(self, panel, symbols: list[str], start_ns: int, end_ns: int
               ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(times ns, symbols, values) of a FactorPanel, checked against the request."""
        times, panel_symbols, count = list(panel.times), list(panel.symbols), len(panel.values)
        limit = self.settings.max_rows_per_request
        if count > limit:
            raise invalid("values.values", f"has {count:,} values; the limit is {limit:,} per request "
                                           f"(MAX_ROWS_PER_REQUEST)")
        if not times:
            raise invalid("values.times", "is empty; give the ISO date of every row")
        if not panel_symbols:
            raise invalid("values.symbols", "is empty; give the symbol of every column")
        if count != len(times) * len(panel_symbols):
            raise invalid("values.values", f"has {count:,} values; expected len(times) x len(symbols) = "
                                           f"{len(times):,} x {len(panel_symbols):,} (row-major)")
        known = set(symbols)
        for index, symbol in enumerate(panel_symbols):
            if symbol not in known:
                raise invalid(f"values.symbols[{index}]", f"{symbol[:40]!r} is not one of symbols")
        if len(set(panel_symbols)) != len(panel_symbols):
            raise invalid("values.symbols", "lists a symbol twice")
        times_ns, ok = parse_times(times)
        if not ok.all():
            index = int(np.argmin(ok))
            raise invalid(f"values.times[{index}]", f"{times[index][:40]!r} is not an ISO-8601 date")
        outside = (times_ns < start_ns) | (times_ns > end_ns)
        if outside.any():
            index = int(np.argmax(outside))
            raise invalid(f"values.times[{index}]", f"{times[index]!r} is outside start_time .. end_time")
        if np.unique(times_ns).size != times_ns.size:
            raise invalid("values.times", "lists a time twice")
        return times_ns, panel_symbols, np.asarray(panel.values, dtype=np.float64)

    def _require_bars(self, symbols: list[str], start_ns: int, end_ns: int, start: str, end: str,
                      panel_times: np.ndarray | None) -> None:
        """Every symbol stored with bars in the range (NOT_FOUND naming it); the panel's times are
        dates of those bars."""
        require_bars_in_range(self.store, symbols, start_ns, end_ns, start, end)
        if panel_times is None:
            return
        # read the symbols' dates a batch at a time and stop once every panel time is covered (one
        # batch on a universe sharing a calendar, instead of every symbol's whole history)
        uncovered = np.unique(panel_times)
        for first in range(0, len(symbols), CALENDAR_BATCH):
            for times in self.store.stored_times(symbols[first:first + CALENDAR_BATCH]).values():
                if times.size:
                    rows = np.minimum(np.searchsorted(times, uncovered), times.size - 1)
                    uncovered = uncovered[times[rows] != uncovered]
            if not uncovered.size:
                return
        index = int(np.flatnonzero(panel_times == uncovered[0])[0])
        raise invalid(f"values.times[{index}]", f"{format_time(int(panel_times[index]))} is not a stored bar "
                                                f"date of any of the symbols")

    # --------------------------------------------------------------- reading
    def GetFactorAnalysis(self, request, context):
        job_id = job_id_field("job_id", request.job_id, TASK_TYPE)
        _, result = completed_result(self.queue, job_id, TASK_TYPE, "follow it with JobService.WatchJob")
        return result_message(job_id, result)

    def GetFactorReport(self, request, context):
        """Rendered by a worker as a ``report`` job (one per analysis, reused while it lives)."""
        job_id = job_id_field("job_id", request.job_id, TASK_TYPE)
        record, _ = completed_result(self.queue, job_id, TASK_TYPE, "follow it with JobService.WatchJob")
        html = render_report(self.queue, record, context, self.settings.job_max_attempts)
        return factor_pb2.FactorReportResponse(job_id=job_id, html=html, content_type=REPORT_CONTENT_TYPE)


def _value(value: float | None) -> float:
    return math.nan if value is None else value


def _values(values: list[float | None]) -> list[float]:
    return [_value(value) for value in values]


def _stats_fields(stats: dict[str, Any]) -> dict[str, Any]:
    """A stored period's statistics as message fields (null = NaN, lists stay lists)."""
    return {name: value if name == "period" else (_values(value) if isinstance(value, list) else _value(value))
            for name, value in stats.items()}


def result_message(job_id: str, result: dict[str, Any]) -> factor_pb2.FactorAnalysisResult:
    """A stored result (null = NaN) as the proto message."""
    periods = [factor_pb2.PeriodStats(**_stats_fields(stats)) for stats in result["periods"]]
    group_stats = [factor_pb2.GroupStats(name=group["name"], periods=[
        factor_pb2.GroupPeriodStats(**_stats_fields(stats)) for stats in group["periods"]])
        for group in result.get("group_stats", [])]  # absent from results stored before by_group stats
    ic, curve = result["ic_series"], result["cumulative_returns"]
    return factor_pb2.FactorAnalysisResult(
        job_id=job_id, loss_fraction=_value(result["loss_fraction"]), loss_breakdown=result["loss_breakdown"],
        periods=periods, ic_series=[factor_pb2.ICPoint(time=t, ic=_values(v)) for t, v in zip(ic["time"], ic["ic"])],
        cumulative_returns=[factor_pb2.CumulativeReturnPoint(time=t, value=_value(v))
                            for t, v in zip(curve["time"], curve["value"])],
        dropped_dates=result["dropped_dates"], device=result.get("device", ""),
        compute_seconds=result.get("compute_seconds", 0.0), group_stats=group_stats)
