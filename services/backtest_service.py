"""BacktestService: validate, queue, and read back backtest jobs. Never computes itself."""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any

from api_proto import backtest_pb2, backtest_pb2_grpc
from services import validation
from services.errors import ServiceError, failed_precondition, invalid, not_found
from services.job_views import (REPORT_CONTENT_TYPE, WATCH_POLL_SECONDS, cancel, completed_result, history_page,
                                job_id_field, render_report, require_job, watch)
from services.stored_data import require_bars_in_range
from utils.cache import RedisCache, digest
from utils.data.store import BarStore
from utils.data.timeutil import epoch_to_iso, format_time
from utils.queue import keys
from utils.queue.jobs import JobRecord, JobSpec, JobStatus
from utils.queue.streams import JobQueue

import grpc

TASK_TYPE = "backtest"
MAX_STRATEGY_CONFIG_BYTES = 64 * 1024


def status_enum(status: JobStatus) -> int:
    return backtest_pb2.BacktestStatus.Value(status.value)


def metrics_message(values: dict[str, Any]) -> backtest_pb2.PerformanceMetrics:
    fields = backtest_pb2.PerformanceMetrics.DESCRIPTOR.fields_by_name
    known = {name: value for name, value in values.items() if name in fields}
    for name in ("max_drawdown_duration", "num_trades"):
        if name in known:
            known[name] = int(known[name])
    return backtest_pb2.PerformanceMetrics(**known)


def status_message(record: JobRecord) -> backtest_pb2.BacktestStatusResponse:
    return backtest_pb2.BacktestStatusResponse(
        backtest_id=record.id, status=status_enum(record.status), progress=record.progress,
        error_message=record.error, attempts=record.attempts, created_at=epoch_to_iso(record.created_at),
        started_at=epoch_to_iso(record.started_at), finished_at=epoch_to_iso(record.finished_at),
        device=record.device)


def completed_backtest(queue: JobQueue, backtest_id: str, whole: bool = True) -> tuple[JobRecord, dict[str, Any]]:
    """Record and stored result of a COMPLETED backtest (``whole=False``: its head, trades left
    for ``queue.result_page``), else a ServiceError: NOT_FOUND for an unknown id or an expired
    result, FAILED_PRECONDITION while it is not COMPLETED. Shared by the result, report and risk
    RPCs and by `main_server.py report`."""
    job_id = job_id_field("backtest_id", backtest_id, TASK_TYPE)
    return completed_result(queue, job_id, TASK_TYPE, "poll GetBacktestStatus or use WatchBacktest", whole)


def result_without_trades(record: JobRecord, result: dict[str, Any]) -> backtest_pb2.BacktestResultResponse:
    """A completed backtest's result message without its trades page: the same for every page."""
    curve = result.get("equity_curve", {})
    return backtest_pb2.BacktestResultResponse(
        backtest_id=record.id, status=backtest_pb2.COMPLETED,
        performance_metrics=metrics_message(result.get("metrics", {})),
        equity_curve=[backtest_pb2.EquityPoint(time=t, equity=e, drawdown=d) for t, e, d in
                      zip(curve.get("time", []), curve.get("equity", []), curve.get("drawdown", []))],
        symbol_metrics={s: metrics_message(m) for s, m in result.get("symbol_metrics", {}).items()},
        strategy_config=json.dumps(result.get("strategy_config", {}), sort_keys=True),
        device=result.get("device", record.device), compute_seconds=result.get("compute_seconds", 0.0),
        **search_fields(result))


class ResultPages:
    """The page-independent part of the last few backtest results read (a finished result never
    changes): paging a long backtest's trades then builds and parses its equity curve once, not per
    page (94,500 points: ~250 ms a page otherwise). Thread-safe (gRPC's thread pool)."""

    def __init__(self, entries: int = 4) -> None:
        self.entries = entries
        self._cached: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Any:
        with self._lock:
            if job_id in self._cached:
                self._cached.move_to_end(job_id)
            return self._cached.get(job_id)

    def put(self, job_id: str, value: Any) -> None:
        with self._lock:
            self._cached[job_id] = value
            self._cached.move_to_end(job_id)
            while len(self._cached) > self.entries:
                self._cached.popitem(last=False)

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._cached.pop(job_id, None)


def _text_map(values: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in values.items()}


def search_fields(result: dict[str, Any]) -> dict[str, Any]:
    """Sweep and walk-forward parts of a stored result as response fields (none without a grid)."""
    sweep = result.get("sweep")
    if not sweep:
        return {}
    windows = [backtest_pb2.WalkForwardWindow(
        window=window["window"], train_start=window["train_start"], train_end=window["train_end"],
        test_start=window["test_start"], test_end=window["test_end"], best_params=_text_map(window["best_params"]),
        in_sample=metrics_message(window["in_sample"]), out_of_sample=metrics_message(window["out_of_sample"]))
        for window in result.get("walk_forward", [])]
    return {"sweep": [backtest_pb2.SweepRow(rank=row["rank"], params=_text_map(row["params"]),
                                            metrics=metrics_message(row["metrics"])) for row in sweep["rows"]],
            "rank_by": sweep["rank_by"], "sweep_combinations": sweep["combinations"], "walk_forward": windows}


class BacktestServicer(backtest_pb2_grpc.BacktestServiceServicer):
    def __init__(self, queue: JobQueue, store: BarStore, settings: Any, results: RedisCache | None = None) -> None:
        self.queue = queue
        self.store = store
        self.settings = settings
        self.results = results  # content address of a request -> the backtest that answers it
        self.result_pages = ResultPages()

    # ------------------------------------------------------------ submission
    def IntegratedBacktest(self, request, context):
        """Submit, then answer once the backtest is finished if that takes at most
        ``backtest_submit_wait_seconds`` (the usage guide's client reads the status right after
        this call), else with the queued state as SubmitBacktestTask does."""
        response = self._submit(request)
        wait = self.settings.backtest_submit_wait_seconds
        if wait > 0 and response.status in (backtest_pb2.PENDING, backtest_pb2.RUNNING):
            record = self._settled(response.backtest_id, wait, context)
            if record is not None and record.status.is_terminal:
                return backtest_pb2.BacktestResponse(backtest_id=record.id, status=status_enum(record.status),
                                                     message=record.error or record.status.value.lower())
        return response

    def _settled(self, job_id: str, seconds: float, context) -> JobRecord | None:
        """The job's record once terminal, or when ``seconds`` pass (at most half the time left to
        the caller's deadline, so that the answer still reaches it)."""
        remaining = context.time_remaining()
        deadline = time.monotonic() + (seconds if remaining is None else min(seconds, remaining / 2))
        with self.queue.announcements.listening(job_id) as changed:
            while True:
                changed.clear()
                record = self.queue.get(job_id)
                left = deadline - time.monotonic()
                if record is None or record.status.is_terminal or left <= 0 or not context.is_active():
                    return record
                changed.wait(min(left, WATCH_POLL_SECONDS))

    def SubmitBacktestTask(self, request, context):
        return self._submit(request)

    def _submit(self, request) -> backtest_pb2.BacktestResponse:
        symbols = validation.symbols("stock_codes", list(request.stock_codes), self.settings.max_symbols_per_request)
        start_ns, end_ns = validation.time_range("start_time", request.start_time, "end_time", request.end_time)
        config = validation.json_object("strategy_config", request.strategy_config, MAX_STRATEGY_CONFIG_BYTES)
        spec = self._strategy(config, len(symbols))
        capital = validation.finite("initial_capital", request.initial_capital, minimum=0, strict_minimum=True)
        commission = validation.finite("commission_rate", request.commission_rate, minimum=0, maximum=0.1)
        device = validation.device("device", request.device)
        self._require_device(device)
        stored_factor = self._stored_factor(spec, symbols)
        position_model = self._position_model(spec)
        versions = list(require_bars_in_range(self.store, symbols, start_ns, end_ns, request.start_time,
                                              request.end_time).values())
        address = digest(spec.normalised(), symbols, versions, start_ns, end_ns, capital, commission,
                         *([stored_factor] if stored_factor else []), *([position_model] if position_model else []))
        reused = self._reuse(address)
        if reused is not None:
            return reused
        payload = {"symbols": symbols, "start_ns": start_ns, "end_ns": end_ns, "strategy_config": config,
                   "initial_capital": capital, "commission_rate": commission, "device": device}
        meta = {"symbols": symbols, "strategy_type": spec.strategy_type,
                "start_time": format_time(start_ns), "end_time": format_time(end_ns)}
        priority = validation.PRIORITY_NAMES.get(request.priority, "normal")
        job_id = self.queue.enqueue(JobSpec(TASK_TYPE, payload, priority, self.settings.job_max_attempts, meta))
        if self.results is not None:
            self.results.set(address, {"backtest_id": job_id})
        return backtest_pb2.BacktestResponse(backtest_id=job_id, status=backtest_pb2.PENDING, message="queued")

    def _reuse(self, address: str) -> backtest_pb2.BacktestResponse | None:
        """The earlier backtest of an identical request (same config, symbols, period, capital,
        commission and data versions) when it is done or still on its way; failed or cancelled
        ones are run again."""
        if self.results is None:
            return None
        cached = self.results.get(address)
        record = self.queue.get(cached["backtest_id"]) if cached else None
        if record is None or record.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            return None
        if record.status is JobStatus.COMPLETED and self.queue.result_head(record.id) is None:
            return None
        message = ("cached: identical request already computed" if record.status is JobStatus.COMPLETED
                   else "identical request already queued; returning its id")
        return backtest_pb2.BacktestResponse(backtest_id=record.id, status=status_enum(record.status),
                                             message=message)

    @staticmethod
    def _strategy(config: dict[str, Any], symbols: int):
        from utils.engine.backtest.config import validate_strategy_config
        try:
            return validate_strategy_config(config, symbols)
        except ValueError as exc:
            message = str(exc)
            if not message.startswith("strategy_config"):
                message = f"strategy_config: {message}"
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message) from None

    def _stored_factor(self, spec, symbols: list[str]) -> dict[str, Any] | None:
        """top_k's stored factor (factor_set_id + factor_name), checked: the set is COMPLETED and
        still stored (NOT_FOUND / FAILED_PRECONDITION), holds the name, and covers the symbols.
        Returns its identity for the result cache address (the set's id, name and version)."""
        params = spec.param_values
        set_id = params.get("factor_set_id")
        if not set_id:
            return None
        from services import factor_requests
        meta = factor_requests.stored_set(self.queue, self.store.redis, "strategy_config.factor_set_id", set_id)
        name = params["factor_name"]
        if name not in meta["names"]:
            listed = ", ".join(meta["names"][:50]) + (", ..." if len(meta["names"]) > 50 else "")
            raise invalid("strategy_config.factor_name", f"{name[:40]!r} is not a factor of factor set "
                                                         f"{meta['id']}; its factors: {listed}")
        missing = [symbol for symbol in symbols if symbol not in set(meta["symbols"])]
        if missing:
            raise invalid("stock_codes", f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} "
                                         f"not in factor set {meta['id']} (its symbols must cover the request's)")
        return {"factor_set_id": meta["id"], "factor_name": name, "finished_at": meta["finished_at"]}

    def _position_model(self, spec) -> dict[str, Any] | None:
        """``strategy_config.position_model``, checked: the model exists (NOT_FOUND) and is a trained
        ppo_position policy (FAILED_PRECONDITION). Returns its identity for the result cache address
        (a model trained again under the same id has a new ``created_at``)."""
        model_id = spec.position_model
        if not model_id:
            return None
        from utils.data import keys as model_keys
        from utils.engine.models.store import ModelNotFound, ModelStore
        from utils.engine.position.policy import KIND
        raw = self.store.redis.hget(model_keys.model(model_id), "metadata")
        try:
            metadata = json.loads(raw) if raw else ModelStore(self.settings.models_path).read_metadata(model_id)
        except ModelNotFound:
            raise not_found(f"strategy_config.position_model: no model with id {model_id!r}; train one with "
                            f"MLService.TrainModel(model_type='{KIND}')") from None
        if metadata.get("model_type") != KIND:
            raise failed_precondition(f"strategy_config.position_model: model {model_id!r} is a "
                                      f"{metadata.get('model_type')!r} model, not a trained {KIND} policy")
        return {"position_model": model_id, "created_at": metadata.get("created_at", "")}

    def _require_device(self, device: str) -> None:
        if device != "gpu":
            return
        workers = self.queue.redis.hvals(keys.WORKERS)
        if not any(label.startswith("gpu") for label in workers):
            raise failed_precondition("device 'gpu' requested but no GPU worker is running "
                                      "(use device 'auto' to run on the CPU when no GPU is present)")

    # --------------------------------------------------------------- reading
    def GetBacktestStatus(self, request, context):
        job_id = job_id_field("backtest_id", request.backtest_id, TASK_TYPE)
        return status_message(require_job(self.queue, job_id, TASK_TYPE))

    def WatchBacktest(self, request, context):
        job_id = job_id_field("backtest_id", request.backtest_id, TASK_TYPE)
        for record in watch(self.queue, job_id, context, TASK_TYPE):
            yield status_message(record)

    def GetBacktestResult(self, request, context):
        return self._result(request)

    def QueryBacktestResult(self, request, context):
        return self._result(request)

    def _result(self, request) -> backtest_pb2.BacktestResultResponse:
        job_id = job_id_field("backtest_id", request.backtest_id, TASK_TYPE)
        cached = self.result_pages.get(job_id)
        if cached is not None and not self.queue.redis.exists(keys.result(job_id)):  # expired since
            self.result_pages.drop(job_id)
            cached = None
        if cached is None:
            record, result = completed_backtest(self.queue, job_id, whole=False)
            cached = (result_without_trades(record, result), {"trades": result.get("trades", [])})
            self.result_pages.put(job_id, cached)
        base, trades = cached
        offset, size = validation.page("page_size", request.page_size, request.page_token, 1000, 10_000)
        paged = self.queue.result_page(job_id, trades, "trades", offset, size)
        if paged is None:
            raise not_found(f"the trades of backtest {job_id} have expired")
        page, total_trades = paged
        response = backtest_pb2.BacktestResultResponse()
        response.CopyFrom(base)
        response.trades.extend(backtest_pb2.Trade(**trade) for trade in page)
        response.next_page_token = str(offset + size) if offset + size < total_trades else ""
        response.total_trades = total_trades
        return response

    def GetBacktestReport(self, request, context):
        """Rendered by a worker as a ``report`` job (one per backtest, reused while it lives)."""
        record, _ = completed_backtest(self.queue, request.backtest_id, whole=False)
        html = render_report(self.queue, record, context, self.settings.job_max_attempts)
        return backtest_pb2.BacktestReportResponse(backtest_id=record.id, html=html,
                                                   content_type=REPORT_CONTENT_TYPE)

    def GetBacktestHistory(self, request, context):
        offset, size = validation.page("page_size", request.page_size, request.page_token, 50, 500)
        after = validation.time_ns("submitted_after", request.submitted_after, required=False)
        before = validation.time_ns("submitted_before", request.submitted_before, required=False)
        if request.status not in backtest_pb2.BacktestStatus.values():  # open enum: any int arrives
            raise invalid("status", f"{request.status} is not a BacktestStatus; valid: "
                                    f"{', '.join(backtest_pb2.BacktestStatus.keys())}")
        wanted_status = (backtest_pb2.BacktestStatus.Name(request.status)
                         if request.status != backtest_pb2.STATUS_UNSPECIFIED else None)

        def keep(record: JobRecord) -> bool:
            created_ns = record.created_at * 1e9
            return ((not request.stock_code or request.stock_code in record.meta.get("symbols", []))
                    and (not request.strategy_type or record.meta.get("strategy_type") == request.strategy_type)
                    and (wanted_status is None or record.status.value == wanted_status)
                    and (after is None or created_ns >= after) and (before is None or created_ns < before))

        records, token = history_page(self.queue, TASK_TYPE, offset, size, keep)
        summaries = []
        for record in records:
            headline = {}
            if record.status is JobStatus.COMPLETED:
                headline = (self.queue.result_head(record.id) or {}).get("metrics", {})
            summaries.append(backtest_pb2.BacktestSummary(
                backtest_id=record.id, status=status_enum(record.status),
                stock_codes=record.meta.get("symbols", []), strategy_type=record.meta.get("strategy_type", ""),
                start_time=record.meta.get("start_time", ""), end_time=record.meta.get("end_time", ""),
                created_at=epoch_to_iso(record.created_at), total_return=headline.get("total_return", 0.0),
                sharpe_ratio=headline.get("sharpe_ratio", 0.0), max_drawdown=headline.get("max_drawdown", 0.0)))
        return backtest_pb2.BacktestHistoryResponse(backtests=summaries, next_page_token=token)

    def CancelBacktest(self, request, context):
        job_id = job_id_field("backtest_id", request.backtest_id, TASK_TYPE)
        record, message = cancel(self.queue, job_id, TASK_TYPE)
        return backtest_pb2.CancelBacktestResponse(backtest_id=job_id, status=status_enum(record.status),
                                                   message=message)
