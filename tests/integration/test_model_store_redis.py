"""MODEL_STORE_URI=redis://: models saved on one machine load on another (a real redis-server)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_models_store import _trained
from utils.data import keys
from utils.engine.models import ModelNotFound, ModelStore
from utils.redis_client import make_redis
from utils.serving.model_store import RedisModelStore, open_model_store


@pytest.fixture
def binary_redis(redis_server, redis_client):  # redis_client flushes the database first
    client = make_redis("127.0.0.1", redis_server.port, decode=False)
    yield client
    client.close()


def test_a_model_saved_on_one_machine_loads_from_another_cache_and_follows_new_versions(tmp_path, binary_redis):
    trainer, server = RedisModelStore(binary_redis, tmp_path / "a"), RedisModelStore(binary_redis, tmp_path / "b")
    predictor, report, features = _trained()
    trainer.save("m1", predictor, report)
    assert server.exists("m1") and server.model_ids() == ["m1"] and not server.exists("m2")
    assert server.read_metadata("m1")["model_type"] == "random_forest"
    np.testing.assert_array_equal(server.load("m1").predict(features), predictor.predict(features))
    assert sorted(p.name for p in (tmp_path / "b" / "m1").iterdir()) == [".store-version", "metadata.json",
                                                                        "model.skops"]
    assert set(binary_redis.hkeys(keys.model_files("m1"))) == {b"metadata.json", b"model.skops", b".version"}

    regression, _, _ = _trained("regression")  # same id, new version: the other cache refreshes
    trainer.save("m1", regression)
    np.testing.assert_allclose(server.load("m1").predict(features), regression.predict(features))

    server.delete("m1")
    assert not trainer.exists("m1") and not (tmp_path / "b" / "m1").exists()
    with pytest.raises(ModelNotFound):
        trainer.load("m1")
    with pytest.raises(ModelNotFound):
        server.delete("m1")


def test_unsafe_file_names_in_the_store_are_refused(tmp_path, binary_redis):
    binary_redis.hset(keys.model_files("evil"), mapping={"../escape": b"x", "metadata.json": b"{}",
                                                        keys.MODEL_FILES_VERSION: b"v1"})
    with pytest.raises(ValueError, match="unsafe"):
        RedisModelStore(binary_redis, tmp_path).load("evil")
    assert not (tmp_path / "escape").exists()


def test_the_uri_selects_the_store(settings_factory, tmp_path):
    assert isinstance(open_model_store(settings_factory()), ModelStore)
    local = open_model_store(settings_factory(model_store_uri=str(tmp_path / "elsewhere")))
    assert local.directory == tmp_path / "elsewhere"
    shared = open_model_store(settings_factory(model_store_uri="redis://"))
    assert isinstance(shared, RedisModelStore) and shared.directory == settings_factory().models_path
