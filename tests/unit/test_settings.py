"""Settings: the seed's names and defaults, and start-up errors that name the variable."""
from __future__ import annotations

import pytest

from config.settings import InvalidSettings, load_settings


def test_defaults_follow_the_seed_guide(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = load_settings()
    assert (settings.grpc_port, settings.redis_host, settings.redis_port, settings.redis_db) == (50051, "localhost", 6379, 0)
    # the guide's .env sets GRPC_MAX_WORKERS=10; our default is higher because every open stream
    # holds a thread (50 streams + 100 watchers in the load bench)
    assert (settings.grpc_max_workers, settings.gpu_device_id, settings.gpu_memory_fraction) == (256, 0, 0.8)
    assert settings.prometheus_port == 9090
    assert settings.concurrency_caps()["backtest"] == 5 and settings.concurrency_caps()["training"] == 3
    assert (settings.gpu_batch_size, settings.feature_cache_ttl, settings.model_cache_ttl) == (200, 120, 600)
    assert not settings.redis_configured


def test_environment_and_dotenv_are_read(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("GRPC_PORT=6000\nMAX_CONCURRENT_BACKTESTS=7\nlog_level=debug\n")
    monkeypatch.setenv("REDIS_HOST", "redis.internal")
    settings = load_settings()
    assert settings.grpc_port == 6000 and settings.max_concurrent_backtests == 7 and settings.log_level == "DEBUG"
    assert settings.redis_host == "redis.internal" and settings.redis_configured


@pytest.mark.parametrize("name,value", [("GRPC_PORT", "not-a-port"), ("GRPC_PORT", "70000"),
                                        ("GPU_MEMORY_FRACTION", "1.5"), ("COMPUTE_DEVICE", "tpu"),
                                        ("MAX_CONCURRENT_TRAINING", "0")])
def test_invalid_settings_fail_naming_the_variable(monkeypatch, tmp_path, name, value):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSettings) as error:
        load_settings()
    assert f"invalid setting {name}=" in str(error.value)
