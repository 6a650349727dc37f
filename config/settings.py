"""One Settings object for the whole platform, read from the environment and `.env`.

Names and defaults follow the seed usage guide (REDIS_HOST, GRPC_PORT 50051, PROMETHEUS_PORT 9090,
max_concurrent_backtests 5, ...). Nothing reads the environment elsewhere: the object is built
once at start-up (``load_settings``) and passed down.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from utils.task_types import TASK_TYPES, TaskType

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class InvalidSettings(SystemExit):
    """Raised at start-up with a message naming each bad variable (exits non-zero)."""


class CoreSettings(BaseSettings):
    """Every setting except the per-task-type caps, which ``Settings`` adds from the registry."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8",
                                      case_sensitive=False, extra="ignore", frozen=True)

    # Redis. When REDIS_HOST is not set and nothing answers on the default address, the
    # all-in-one server starts an embedded redis-server (REDIS_EMBEDDED=auto).
    redis_host: str = "localhost"
    redis_port: int = Field(6379, ge=0, le=65535)
    redis_db: int = Field(0, ge=0, le=15)
    redis_password: str | None = None
    redis_embedded: Literal["auto", "always", "never"] = "auto"
    redis_socket_timeout: float = Field(5.0, gt=0)
    # Redis Cluster: seed nodes "host:port,host:port"; when set, clients are redis-py
    # RedisCluster (REDIS_HOST/PORT/DB are ignored, and no embedded server is started).
    redis_cluster_nodes: str = ""

    # gRPC front end.
    grpc_host: str = "0.0.0.0"
    grpc_port: int = Field(50051, ge=0, le=65535)
    # One thread per RPC in flight, and a stream (StreamMarketData, WatchBacktest...) holds its
    # thread while open, so this bounds the streams open at once. The guide's .env sets 10,
    # which serves at most 10 open streams; the default is higher for that reason. Up to 4x as
    # many RPCs may wait for a thread; beyond that they answer RESOURCE_EXHAUSTED at once.
    grpc_max_workers: int = Field(256, ge=1, le=10_000)
    grpc_max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024)

    # WebSocket gateway + web dashboard (services/gateway): `main_server.py gateway`, and in the
    # all-in-one mode unless GATEWAY_ENABLED=false. Each connection buffers at most
    # GATEWAY_QUEUE_SIZE pushes: past that its oldest market data is dropped (and when only
    # status/alert pushes are queued the connection is closed). Protocol pings every
    # GATEWAY_PING_SECONDS; a client silent for GATEWAY_IDLE_TIMEOUT_SECONDS is disconnected.
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    gateway_enabled: bool = True
    gateway_queue_size: int = Field(1000, ge=4, le=1_000_000)
    gateway_ping_seconds: float = Field(20.0, gt=0, le=3600)
    gateway_idle_timeout_seconds: float = Field(300.0, gt=0, le=86_400)
    gateway_auth_timeout_seconds: float = Field(10.0, gt=0, le=600)
    gateway_system_interval_seconds: float = Field(2.0, gt=0, le=3600)

    # Security (services/security.py); all off by default. TLS when both files are set; a client
    # CA also requires client certificates (mutual TLS). API keys: JSON {"keys": [...]} inline or
    # in a file (re-read when it changes); none configured = every caller is admitted.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    api_keys: str = ""
    api_keys_file: str = ""

    # Compute devices.
    compute_device: Literal["auto", "cpu", "gpu"] = "auto"
    gpu_device_id: int = Field(0, ge=0)
    gpu_memory_fraction: float = Field(0.8, gt=0, le=1)
    # Tests only: a `gpu`/`auto` backend is numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1 must be
    # set before numba's import, else resolving fails), so the GPU code paths run without a GPU.
    gpu_simulator: bool = False
    gpu_batch_size: int = Field(200, ge=1)
    # Worker processes for the all-in-one mode; 0 = one per GPU, or one CPU worker.
    worker_processes: int = Field(0, ge=0, le=64)
    # The task types this machine's workers take (comma-separated, e.g. "backtest,backtest_shard");
    # empty = every type. A worker builds, warms up and reads the streams of these only, so
    # backtest-only workers never load the ML stack (torch, LightGBM, scikit-learn: ~380 MiB per
    # process). Some worker in the deployment must take each type that is submitted, and the shard
    # type of each sharded one (backtest -> backtest_shard, features/factor -> panel_shard).
    worker_task_types: str = ""

    # Metrics: the server on PROMETHEUS_PORT, worker i on PROMETHEUS_PORT + 1 + i.
    prometheus_port: int = Field(9090, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"

    # Queue semantics.
    job_lease_seconds: float = Field(30.0, gt=0)
    job_max_attempts: int = Field(3, ge=1, le=100)
    job_retry_backoff_seconds: float = Field(1.0, ge=0)
    result_ttl_seconds: int = Field(7 * 24 * 3600, ge=1)
    # A result's top-level list longer than this (a big backtest's trades) is stored in chunks of
    # this many rows beside it, so a GetBacktestResult page reads one or two chunks, not them all.
    result_chunk_rows: int = Field(10_000, ge=1)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    # IntegratedBacktest (the usage guide's submit, whose client reads the status right after it)
    # answers with the finished status when the backtest ends within this many seconds, else with
    # the queued status at that point (SubmitBacktestTask always answers at once); 0 = never wait.
    backtest_submit_wait_seconds: float = Field(1.0, ge=0, le=60)

    # Caches.
    feature_cache_ttl: int = Field(120, ge=1)
    model_cache_ttl: int = Field(600, ge=1)
    # Aligned price panels a worker keeps for factor jobs on the same symbols and dates (MiB;
    # entries are checked against the symbols' data versions on every use; 0 disables).
    factor_panel_cache_mb: int = Field(1024, ge=0)
    # Stored bars a worker keeps for its next backtests on the same symbols (MiB; each use checks
    # the symbols' data versions first, so a re-import is always seen; 0 disables).
    backtest_bar_cache_mb: int = Field(512, ge=0)
    # Backtests and sweeps over more symbols than this are split into shards of this many symbols,
    # run as backtest_shard child jobs by every worker and reduced by the parent (0 = never shard).
    shard_symbols: int = Field(200, ge=0)
    # Per-worker memory budget for one shard's bars (MiB): a shard holds at most
    # budget // (bytes per symbol of the job's time range and fields) symbols (>= 1), and at most
    # SHARD_SYMBOLS.
    shard_memory_mb: int = Field(512, ge=1)
    # Seconds a sharded parent waits for its shards before failing (their own retries included).
    shard_wait_seconds: float = Field(3600.0, gt=0)
    # Factor analyses (AnalyzeFactor, expression factors without filter_zscore or by_group) over
    # more dates than this run as date shards of this many dates (panel_shard child jobs; 0 = never).
    # Feature jobs over more than SHARD_SYMBOLS symbols run as symbol shards.
    factor_shard_days: int = Field(1000, ge=0)

    # AnalyzeSentiment (utils/sentiment): lexicon models (VADER, SnowNLP) always; with LLM_API_URL
    # (an OpenAI-compatible base URL or its /chat/completions endpoint) + LLM_MODEL (+ LLM_API_KEY)
    # an LLM first, whose answer must arrive within LLM_TIMEOUT_SECONDS (the whole request's
    # deadline; the lexicon score is the fallback). Without an LLM, texts the lexicons have not
    # scored within SENTIMENT_TIMEOUT_SECONDS come back as a neutral 0 ("default").
    llm_api_url: str = ""
    llm_api_key: str = ""
    llm_model: str = ""
    llm_timeout_seconds: float = Field(3.0, gt=0, le=120)
    sentiment_timeout_seconds: float = Field(10.0, gt=0, le=600)

    # Predict serving: concurrent requests for one model are coalesced into one model call of at
    # most PREDICT_MAX_BATCH_ROWS rows (0 disables batching), waiting at most PREDICT_MAX_WAIT_MS
    # after the first request; each device attempt may take PREDICT_TIMEOUT_SECONDS, then the
    # call is retried once on the next device of the chain (GPU -> CPU, or CPU again).
    predict_max_batch_rows: int = Field(1024, ge=0, le=1_000_000)
    predict_max_wait_ms: float = Field(2.0, ge=0, le=1000)
    predict_timeout_seconds: float = Field(3.0, gt=0, le=600)
    # onnx: Predict runs each model's exported ONNX graph (what ExportModel returns) with ONNX
    # Runtime, CUDA first when the server has a GPU; models without one stay native.
    predict_runtime: Literal["native", "onnx"] = "native"

    # Remote GPU inference (utils/serving/remote_inference.py): with ML_GPU_INFERENCE_URL set
    # (host:port of a `main_server.py inference` role), Predict asks it first, each try limited
    # to ML_REMOTE_TIMEOUT_SECONDS (a fast UNAVAILABLE is retried once), then computes locally.
    # After ML_REMOTE_BREAKER_FAILURES failed requests in a row the remote is skipped for
    # ML_REMOTE_BREAKER_COOLDOWN_SECONDS, then one trial request decides. The API key / CA file
    # are this server's credentials toward the remote (TLS when the CA file is set).
    ml_gpu_inference_url: str = ""
    ml_remote_timeout_seconds: float = Field(5.0, gt=0, le=600)
    ml_remote_breaker_failures: int = Field(3, ge=1, le=1000)
    ml_remote_breaker_cooldown_seconds: float = Field(30.0, ge=0, le=86_400)
    ml_gpu_inference_api_key: str = ""
    ml_gpu_inference_ca_file: str = ""
    # The inference role (`main_server.py inference`): its gRPC port and Predict's device
    # (auto = CUDA when present, else the CPU; cuda without a GPU fails at start).
    inference_port: int = Field(50061, ge=0, le=65535)
    ml_inference_device: Literal["auto", "cuda", "cpu"] = "auto"
    # Test-only (honoured only with INFERENCE_TEST_HOOKS=1, by the inference role): delay every
    # Predict, or answer it with INTERNAL, to exercise the caller's timeout and fallback.
    inference_test_hooks: bool = False
    inference_test_delay_seconds: float = Field(0.0, ge=0, le=600)
    inference_test_error: bool = False

    # Limits on request size.
    max_training_data_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    max_symbols_per_request: int = Field(500, ge=1)
    max_rows_per_request: int = Field(1_000_000, ge=1)  # rows of training_data / Predict input_data
    max_ticks_per_message: int = Field(100_000, ge=1)  # ticks in one StreamMarketData message
    tick_stream_maxlen: int = Field(100_000, ge=100)
    # Compile indicator kernels in the background at start: the default feature sets, every
    # kind, or none (then the first request using a kind compiles it, ~1 s per kind).
    warm_up_indicators: Literal["default", "all", "none"] = "default"
    # Time bars built from streamed ticks (comma-separated; empty disables).
    bar_intervals: str = "1s,1m,5m,1d"
    # Ticks accepted but not yet stored; beyond it streams get RESOURCE_EXHAUSTED (backpressure).
    tick_backlog_max: int = Field(200_000, ge=1000)
    # Accepted ticks are stored (XADD, bar upserts, PUBLISH) by a write-behind writer at most this
    # often: a crash loses at most the last interval's ticks; subscribers see them this much later.
    tick_flush_ms: float = Field(10.0, gt=0, le=1000)
    stream_send_buffer: int = Field(1024, ge=1)

    # Storage and data.
    data_dir: Path = PROJECT_ROOT / "data"
    # numba's on-disk cache of compiled kernels (the same variable numba reads); empty = DATA_DIR/
    # numba-cache. Kept across restarts, so a restarted worker loads its kernels instead of compiling.
    numba_cache_dir: Path | None = None
    # A worker compiles/loads the kernels of its task types on tiny inputs before it takes jobs,
    # for at most this long (logged); in the background on a first start, while the cache is not
    # yet warm. 0 = no warm-up (the first job of each kind compiles or loads its kernels).
    worker_warm_up_seconds: float = Field(120.0, ge=0)
    model_dir: Path | None = None
    # Where trained models live: empty = the local MODEL_DIR; redis:// = in the platform's Redis
    # (redis://host:port/db for another one), so machines without a shared disk load the same
    # models (each is materialised into MODEL_DIR, used as a local cache).
    model_store_uri: str = ""
    # Where bars are kept: "parquet" (the default: files at MARKET_DATA_URI, embedded, nothing to
    # run; Redis keeps only the catalogue, versions, ticks and live bars) or "redis" (one hash per
    # symbol, bounded by Redis's RAM).
    bar_store: Literal["redis", "parquet"] = "parquet"
    # The parquet store's location: a local directory (empty = DATA_DIR/market) or
    # s3://bucket/prefix (pyarrow's S3 filesystem; ?endpoint_override=host:port&scheme=http for MinIO).
    market_data_uri: str = ""
    # In-process cache of recently read bar ranges of the parquet store (MiB).
    bar_cache_mb: int = Field(256, ge=0)
    # Hot cache of recently read bar ranges in Redis, shared by every process and machine (parquet
    # store): at most HOT_CACHE_MB in all (0 = off), each range kept HOT_CACHE_TTL_SECONDS, ranges
    # above HOT_CACHE_ENTRY_MB not kept.
    hot_cache_mb: int = Field(128, ge=0)
    hot_cache_ttl_seconds: int = Field(600, ge=1, le=7 * 86_400)
    hot_cache_entry_mb: int = Field(8, ge=1)
    # Where MarketDataService.ImportFile may read files: comma-separated directories and/or
    # s3://bucket/prefix entries (empty = DATA_DIR/imports; an s3 MARKET_DATA_URI's bucket is
    # always allowed). Paths are resolved (links, ..) before the check; anything else is refused.
    import_roots: str = ""
    sample_data: bool = True

    # Logging.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("bar_intervals")
    @classmethod
    def _intervals(cls, value: str) -> str:
        from utils.realtime.bar_aggregator import parse_intervals
        parse_intervals(value)  # raises ValueError naming the bad interval
        return value

    @field_validator("worker_task_types")
    @classmethod
    def _task_types(cls, value: str) -> str:
        from utils.task_types import names
        chosen = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in names()]
        if unknown:
            raise ValueError(f"unknown task type(s) {', '.join(unknown)}; known: {', '.join(names())}")
        return ",".join(chosen)

    @field_validator("redis_cluster_nodes")
    @classmethod
    def _cluster_nodes(cls, value: str) -> str:
        if value.strip():
            from utils.redis_client import parse_cluster_nodes
            parse_cluster_nodes(value)  # raises ValueError naming the bad host:port
        return value.strip()

    @field_validator("numba_cache_dir", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def compile_cache_path(self) -> Path:
        return self.numba_cache_dir or (self.data_dir / "numba-cache")

    @property
    def models_path(self) -> Path:
        return self.model_dir or (self.data_dir / "models")

    @property
    def redis_configured(self) -> bool:
        """True when the operator named a Redis explicitly (then we never start our own)."""
        return ("redis_host" in self.model_fields_set or "redis_port" in self.model_fields_set
                or bool(self.redis_cluster_nodes))

    def worker_types(self, task_types: tuple[TaskType, ...] = TASK_TYPES) -> tuple[TaskType, ...]:
        """The task types this process's workers take (WORKER_TASK_TYPES; all when empty)."""
        chosen = set(self.worker_task_types.split(",")) if self.worker_task_types else None
        return tuple(t for t in task_types if chosen is None or t.name in chosen)

    def concurrency_caps(self, task_types: tuple[TaskType, ...] = TASK_TYPES) -> dict[str, int]:
        """Per-worker slots of each task type (the scheduler reads only streams with a cap)."""
        return {t.name: getattr(self, t.cap_setting, t.cap_default) for t in task_types}


def _with_task_caps(base: type[CoreSettings], task_types: tuple[TaskType, ...]) -> type[CoreSettings]:
    """``base`` plus one cap field per task type (MAX_CONCURRENT_BACKTESTS=5 ...), so a new type's
    cap is declared in its registry entry, not here. Caps are per worker process, i.e. per device."""
    fields = {t.cap_setting: (int, Field(t.cap_default, ge=1, le=256, description=t.cap_help)) for t in task_types}
    return create_model("Settings", __base__=base, __module__=__name__, __doc__=base.__doc__, **fields)


Settings = _with_task_caps(CoreSettings, TASK_TYPES)


def load_settings(**overrides: object) -> Settings:
    """Build Settings; on invalid values exit with a message naming each variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "SETTINGS"
            lines.append(f"invalid setting {name}={error.get('input')!r}: {error['msg']}")
        raise InvalidSettings("\n".join(lines)) from None
