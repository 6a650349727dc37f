"""Every Redis key of the data layer: market data (catalogue, bars, ticks, live state), caches
and the model registry. The job queue's keys are in ``utils/queue/keys.py``."""
from __future__ import annotations

# Market data.
SYMBOLS = "md:symbols"  # set of symbols with stored bars


def bars(symbol: str) -> str:
    """Hash: columnar float64/int64 arrays of one symbol's bars plus meta fields."""
    return f"md:bars:{symbol}"


def hot_range(symbol: str, interval: str, version: int, start_ns: int | None, end_ns: int | None) -> str:
    """String with HOT_CACHE_TTL_SECONDS: one range of a symbol's stored bars (parquet store),
    packed int64 time + float64 OHLCV; the version in the name means an entry is never stale."""
    return f"md:hot:{symbol}:{interval}:{version}:{'' if start_ns is None else start_ns}:{'' if end_ns is None else end_ns}"


def hot_bytes(bucket: int) -> str:
    """Integer: bytes put in the hot range cache during one minute (its budget's accounting)."""
    return f"md:hot-bytes:{bucket}"


def interval_bars(symbol: str, interval: str) -> str:
    """Hash: bars aggregated from ticks; field = bucket start (ns), value = packed OHLCV float64.
    The symbol is a hash tag, shared with ``ticks``: a tick flush writes both in one script
    (one Redis Cluster slot per symbol)."""
    return f"md:bars:{{{symbol}}}:{interval}"


def ticks(symbol: str) -> str:
    """Stream: raw ticks of one symbol (capped); same hash tag as ``interval_bars``."""
    return f"md:ticks:{{{symbol}}}"


def stream_state(symbol: str) -> str:
    """Hash: snapshot of a symbol's streaming indicator states (feature -> raw float64 bytes)."""
    return f"md:state:{symbol}"


def subscribed(symbol: str) -> str:
    """String with a short TTL: present while some SubscribeMarketData stream follows the symbol."""
    return f"md:subscribed:{symbol}"


def sentiment(symbol: str) -> str:
    """Hash: a symbol's stored sentiment; field = time (ns, decimal), value = mean score in [-1, 1]."""
    return f"md:sentiment:{symbol}"


def live_channel(symbol: str) -> str:
    """Pub/sub channel: tick + indicator updates of one symbol for subscribers."""
    return f"md:live:{symbol}"


# Factor research.
def factor_values(job_id: str) -> str:
    """String with the result TTL: a factor analysis job's FactorPanel values, raw little-endian
    float64 bytes (row-major times x symbols), kept out of the job payload."""
    return f"factor:values:{job_id}"


def factor_set(set_id: str) -> str:
    """Hash with the result TTL: a stored factor set's meta (JSON: names, times, symbols...).
    The set id is a hash tag: the meta and its panels are written in one MULTI/EXEC (one
    Redis Cluster slot per set)."""
    return f"factor:set:{{{set_id}}}"


def factor_set_values(set_id: str, index: int) -> str:
    """String with the result TTL: factor ``index`` of a factor set, raw little-endian float64
    bytes (row-major times x symbols, NaN = missing)."""
    return f"factor:set:{{{set_id}}}:{index}"


# Caches and models.
def cache(namespace: str, digest: str) -> str:
    return f"cache:{namespace}:{digest}"


def model(model_id: str) -> str:
    """Hash: a trained model's metadata (JSON) and its training job. The ``{ml}`` hash tag puts
    the registry (these hashes and ``MODELS``, written in one MULTI/EXEC) in one Redis Cluster
    slot; it is small (metadata only; the files are ``model_files``, spread by model id)."""
    return f"{{ml}}:model:{model_id}"


MODELS = "{ml}:models"  # sorted set: model ids by creation time


def model_files(model_id: str) -> str:
    """Hash (MODEL_STORE_URI=redis://): a saved model directory, file name -> bytes, plus the
    ``MODEL_FILES_VERSION`` field; replaced whole in one MULTI/EXEC."""
    return f"ml:model-files:{model_id}"


MODEL_FILES_PATTERN = "ml:model-files:*"
MODEL_FILES_VERSION = ".version"  # not a file name a model writes (no leading dots there)


# Live risk limits.
def risk_portfolio(portfolio_id: str) -> str:
    """String (JSON): a live portfolio's weights, sectors, set prices, lookback and limits
    (PortfolioService.SetRiskLimits)."""
    return f"risk:portfolio:{portfolio_id}"
