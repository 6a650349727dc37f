"""Every task type the job queue runs, declared once.

One ``TaskType`` per kind of job, the way ``utils/engine/indicators`` declares each indicator kind
once: the queue's stream keys and job-id prefixes, the per-worker caps (settings and their
``.env.example`` lines), the Prometheus task counters, the worker's handlers and the scheduler's
streams are all derived from ``TASK_TYPES``. Adding a task type is one handler module (a factory
``make_handler(resources) -> handler``, see ``utils/tasks/resources.py``) plus one entry here,
and its RPCs; nothing in the queue, scheduler, settings or monitoring modules changes.

This module is declarative and imports nothing heavy: handlers are named as ``module:function``
and imported by the worker at start-up (``load_handler_factory``), so the gRPC server, the
settings and the metrics can read the registry without loading the compute engine.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_PREFIX = re.compile(r"^[a-z]{2,4}$")
_SETTING = re.compile(r"^[a-z][a-z0-9_]*$")
_HANDLER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class TaskType:
    """What the platform needs to know about one kind of job."""

    name: str  # stream/metric label and JobService's task_type, e.g. "backtest"
    id_prefix: str  # job ids are "<prefix>-<32 hex>", e.g. "bt-..."
    noun: str  # how messages name one job: "no backtest with id ..."
    cap_setting: str  # Settings field of the per-worker cap; env var = its upper-case name
    cap_default: int  # slots per worker process (per device) when the setting is not given
    cap_help: str  # the comment line above the cap in .env.example
    counter: str  # Prometheus counter family of this type's jobs by status
    handler: str  # "module:function"; function(WorkerResources) -> handler(JobContext) -> dict
    result_ttl_seconds: int | None = None  # None: RESULT_TTL_SECONDS
    gpu: bool = True  # may its handler compute on the worker's GPU? False: always the CPU backend

    @property
    def env_var(self) -> str:
        return self.cap_setting.upper()

    @property
    def env_example_lines(self) -> tuple[str, str]:
        """The two lines .env.example holds for this type's cap."""
        return f"# {self.cap_help}", f"{self.env_var}={self.cap_default}"


TASK_TYPES: tuple[TaskType, ...] = (
    TaskType(name="backtest", id_prefix="bt", noun="backtest",
             cap_setting="max_concurrent_backtests", cap_default=5,
             cap_help="Backtests and parameter sweeps run at once per worker (the seed's 5).",
             counter="backtest_tasks", handler="utils.tasks.backtest:make_backtest_handler"),
    TaskType(name="backtest_shard", id_prefix="bs", noun="backtest shard",
             cap_setting="max_concurrent_backtest_shards", cap_default=2,
             cap_help="Symbol shards of large backtests and sweeps (child jobs; own slots, so parents never starve them).",
             counter="backtest_shard_tasks", handler="utils.tasks.shards:make_shard_handler",
             result_ttl_seconds=24 * 3600),
    TaskType(name="training", id_prefix="tr", noun="training task",
             cap_setting="max_concurrent_training", cap_default=3,
             cap_help="Model trainings run at once per worker (the seed's 3).",
             counter="ml_training_tasks", handler="utils.tasks.training:make_training_handler"),
    TaskType(name="features", id_prefix="ft", noun="feature job",
             cap_setting="max_concurrent_features", cap_default=4,
             cap_help="Multi-symbol ComputeFeatures panels run at once per worker.",
             counter="feature_tasks", handler="utils.tasks.features:make_features_handler",
             result_ttl_seconds=3600),
    TaskType(name="panel_shard", id_prefix="ps", noun="feature or factor shard",
             cap_setting="max_concurrent_panel_shards", cap_default=2,
             cap_help="Symbol shards of large feature jobs and date shards of large factor analyses (child jobs; own slots).",
             counter="panel_shard_tasks", handler="utils.tasks.panel_shards:make_panel_shard_handler",
             result_ttl_seconds=24 * 3600),
    TaskType(name="report", id_prefix="rp", noun="report",
             cap_setting="max_concurrent_reports", cap_default=2,
             cap_help="HTML tearsheets (GetBacktestReport, GetFactorReport) rendered at once per worker.",
             counter="report_tasks", handler="utils.tasks.report:make_report_handler",
             result_ttl_seconds=3600, gpu=False),
    TaskType(name="factor", id_prefix="fa", noun="factor analysis",
             cap_setting="max_concurrent_factor", cap_default=2,
             cap_help="Factor analyses (FactorService.AnalyzeFactor) run at once per worker.",
             counter="factor_tasks", handler="utils.tasks.factor:make_factor_handler"),
    TaskType(name="factor_set", id_prefix="fs", noun="factor set",
             cap_setting="max_concurrent_factor_sets", cap_default=2,
             cap_help="Factor sets computed or combined at once per worker (ComputeFactors, CombineFactors).",
             counter="factor_set_tasks", handler="utils.tasks.factor_sets:make_factor_set_handler"),
    TaskType(name="factor_eval", id_prefix="fe", noun="factor evaluation",
             cap_setting="max_concurrent_factor_evaluations", cap_default=1,
             cap_help="Many-factor evaluations (FactorService.EvaluateFactors) run at once per worker.",
             counter="factor_eval_tasks", handler="utils.tasks.factor_eval:make_factor_eval_handler"),
    TaskType(name="portfolio", id_prefix="pf", noun="portfolio optimisation",
             cap_setting="max_concurrent_portfolio", cap_default=2,
             cap_help="Portfolio optimisations (PortfolioService.OptimizePortfolio) run at once per worker.",
             counter="portfolio_tasks", handler="utils.tasks.portfolio:make_portfolio_handler", gpu=False),
    TaskType(name="risk", id_prefix="rk", noun="risk report",
             cap_setting="max_concurrent_risk", cap_default=2,
             cap_help="Risk reports (PortfolioService.ComputeRisk; Monte Carlo on the GPU when present) at once per worker.",
             counter="risk_tasks", handler="utils.tasks.risk:make_risk_handler"),
    TaskType(name="execution", id_prefix="ex", noun="execution simulation",
             cap_setting="max_concurrent_execution", cap_default=2,
             cap_help="Execution simulations (ExecutionService.SimulateExecution) run at once per worker.",
             counter="execution_tasks", handler="utils.tasks.execution:make_execution_handler", gpu=False),
    TaskType(name="import", id_prefix="im", noun="file import",
             cap_setting="max_concurrent_imports", cap_default=1,
             cap_help="Server-side file imports (MarketDataService.ImportFile) run at once per worker.",
             counter="import_tasks", handler="utils.tasks.import_file:make_import_handler", gpu=False),
)


class UnknownTaskType(ValueError):
    """A task type name that is not in the registry."""


def names(task_types: Iterable[TaskType] = TASK_TYPES) -> tuple[str, ...]:
    return tuple(t.name for t in task_types)


def get(name: str, task_types: Iterable[TaskType] = TASK_TYPES) -> TaskType:
    for task_type in task_types:
        if task_type.name == name:
            return task_type
    raise UnknownTaskType(f"unknown task type {name!r}; registered: {', '.join(names(task_types))}")


def load_handler_factory(task_type: TaskType) -> Callable[[Any], Any]:
    """Import the declared ``module:function`` (a registry constant, never request data)."""
    module_name, _, function_name = task_type.handler.partition(":")
    factory = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(factory):
        raise AttributeError(f"{task_type.handler} is not a function")
    return factory


def declaration_problems(task_types: Iterable[TaskType] = TASK_TYPES, import_handlers: bool = True) -> list[str]:
    """Everything wrong with a registry, one sentence each (empty when it is whole): bad or
    duplicate names, prefixes, cap settings or counters; a missing cap or handler."""
    problems: list[str] = []
    seen: dict[str, set[str]] = {"name": set(), "id_prefix": set(), "cap_setting": set(), "counter": set()}
    for task_type in task_types:
        label = f"task type {task_type.name!r}"
        checks = [(_NAME, "name", "lower-case letters, digits, _"), (_PREFIX, "id_prefix", "2-4 lower-case letters"),
                  (_SETTING, "cap_setting", "a settings field name"), (_SETTING, "counter", "a metric name")]
        for pattern, attribute, expected in checks:
            value = getattr(task_type, attribute)
            if not isinstance(value, str) or not pattern.match(value):
                problems.append(f"{label}: {attribute} {value!r} is not {expected}")
            elif value in seen[attribute]:
                problems.append(f"{label}: {attribute} {value!r} is declared twice")
            seen[attribute].add(value)
        if not isinstance(task_type.cap_default, int) or task_type.cap_default < 1:
            problems.append(f"{label}: no cap (cap_default {task_type.cap_default!r}; must be >= 1, or its jobs "
                            f"would stay PENDING forever)")
        if not task_type.cap_help:
            problems.append(f"{label}: cap_help is empty (the .env.example line that documents its cap)")
        if not isinstance(task_type.handler, str) or not _HANDLER.match(task_type.handler):
            problems.append(f"{label}: no handler (declare 'module:function', got {task_type.handler!r})")
        elif import_handlers:
            try:
                load_handler_factory(task_type)
            except (ImportError, AttributeError) as exc:
                problems.append(f"{label}: handler {task_type.handler} cannot be loaded ({exc})")
        if task_type.result_ttl_seconds is not None and task_type.result_ttl_seconds < 1:
            problems.append(f"{label}: result_ttl_seconds must be >= 1 or None")
    return problems
