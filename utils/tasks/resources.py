"""What a task handler factory is given: the settings, its compute backend and shared stores.

Every handler module exposes ``make_<type>_handler(resources) -> handler`` (named in its
``utils/task_types.py`` entry). Connections and stores are opened once per worker process, on
first use, and shared by all handlers.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from utils.engine.backend import Backend, BackendUnavailable, cpu_backend
from utils.queue.worker import PermanentJobError
from utils.task_types import TaskType


class WorkerResources:
    def __init__(self, settings: Any, backend: Backend, shared: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.backend = backend  # this task type's backend: the worker's, or the CPU for gpu=False types
        self._shared = {"lock": threading.RLock()} if shared is None else shared  # stores build on each other
        self._shared.setdefault("worker_backend", backend)  # the process's device, whatever this type's

    def for_task(self, task_type: TaskType) -> "WorkerResources":
        """The resources a type's handler gets: the CPU backend when the type may not use a GPU."""
        return WorkerResources(self.settings, self.backend if task_type.gpu else cpu_backend(), self._shared)

    def backend_for(self, requested: str) -> Backend:
        """The backend one job runs on, from its request's ``device`` ("auto", "cpu", "gpu"); a
        ``gpu`` request on a worker without one fails the job at once (retrying cannot help)."""
        try:
            return self.backend.for_request(requested)
        except BackendUnavailable as exc:
            raise PermanentJobError(str(exc)) from None

    def _once(self, name: str, build: Callable[[], Any]) -> Any:
        with self._shared["lock"]:
            if name not in self._shared:
                self._shared[name] = build()
            return self._shared[name]

    @property
    def redis(self) -> Any:
        """A decode_responses=True client (job records, model registry)."""
        from utils.redis_client import redis_from_settings
        return self._once("redis", lambda: redis_from_settings(self.settings, decode=True))

    @property
    def bar_store(self) -> Any:
        from utils.data.store import bar_store_from_settings
        from utils.redis_client import redis_from_settings
        return self._once("bar_store", lambda: with_gpu_reader(bar_store_from_settings(
            redis_from_settings(self.settings, decode=False), self.settings), self._shared["worker_backend"]))

    @property
    def aligned_bars_cache(self) -> Any:
        """Aligned price panels shared by the factor jobs of this worker (None when disabled)."""
        from utils.tasks.factor_panels import AlignedBarsCache
        size = self.settings.factor_panel_cache_mb * 2**20
        return self._once("aligned_bars_cache", lambda: AlignedBarsCache(size) if size else None)

    @property
    def execution_policies(self) -> Any:
        """Trained ppo_execution policies, loaded once per worker."""
        from utils.serving.execution_policies import ExecutionPolicies
        return self._once("execution_policies", lambda: ExecutionPolicies(self.model_store))

    @property
    def model_store(self) -> Any:
        from utils.serving.model_store import open_model_store
        return self._once("model_store", lambda: open_model_store(self.settings))

    @property
    def queue(self) -> Any:
        """The job queue (a handler that reads another job's record or result)."""
        from utils.queue.streams import JobQueue, QueueConfig
        return self._once("queue", lambda: JobQueue(self.redis, QueueConfig.from_settings(self.settings)))


def with_gpu_reader(store: Any, backend: Backend) -> Any:
    """``store`` decoding its Parquet files with cuDF when this worker's device is a GPU and cuDF
    imports (``utils/gpu/cudf_io.py``); unchanged otherwise (pyarrow)."""
    if backend.is_gpu and not backend.simulated and hasattr(store, "table_reader"):
        from utils.gpu.cudf_io import cudf_module, parquet_reader
        cudf = cudf_module()
        if cudf is not None:
            store.table_reader = parquet_reader(cudf)
    return store
