"""The model store selected by MODEL_STORE_URI: the local directory, or Redis for several machines.

``redis://`` keeps each saved model directory as one Redis hash (file name -> bytes, plus a
version), written in one MULTI/EXEC so readers see the old or the new model, never half of one.
Loading materialises the hash into the local cache directory (MODEL_DIR) once per version, then
loads from there with the same safe loaders as the local store. Redis lives here, not in
``utils/engine`` (which stays free of Redis).
"""
from __future__ import annotations

import json
import shutil
import threading
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import redis

from utils.data import keys
from utils.engine.models import BasePredictor, ModelNotFound, ModelStore
from utils.engine.models.base import METADATA_FILE
from utils.engine.models.registry import MODEL_REGISTRY, ModelRegistry
from utils.engine.models.store import MODEL_ID_PATTERN, validate_model_id
from utils.engine.models.trainer import TrainingReport

VERSION_FILE = ".store-version"  # in the cached directory: the Redis version it holds


class RedisModelStore:
    """``ModelStore``'s interface over Redis, with ``cache_dir`` as the local copy."""

    def __init__(self, client: redis.Redis, cache_dir: str | Path, registry: ModelRegistry = MODEL_REGISTRY) -> None:
        self.redis = client  # decode_responses=False: files are bytes
        self.cache = ModelStore(cache_dir, registry)
        self.directory = self.cache.directory
        self.registry = registry
        self._lock = threading.Lock()

    def exists(self, model_id: str) -> bool:
        return bool(self.redis.hexists(keys.model_files(validate_model_id(model_id)), METADATA_FILE))

    def model_ids(self) -> list[str]:
        prefix = keys.model_files("")
        names = (key.decode()[len(prefix):] for key in self.redis.scan_iter(keys.MODEL_FILES_PATTERN, count=500))
        return sorted(name for name in names if MODEL_ID_PATTERN.fullmatch(name))

    def save(self, model_id: str, predictor: BasePredictor, report: TrainingReport | None = None) -> Path:
        path = self.cache.save(model_id, predictor, report)  # local, atomic; then the shared copy
        version = uuid.uuid4().hex
        files = {str(file.relative_to(path).as_posix()): file.read_bytes()
                 for file in sorted(path.rglob("*")) if file.is_file() and file.name != VERSION_FILE}
        key = keys.model_files(model_id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={**files, keys.MODEL_FILES_VERSION: version})
            pipe.execute()
        (path / VERSION_FILE).write_text(version)
        return path

    def read_metadata(self, model_id: str) -> dict[str, Any]:
        raw = self.redis.hget(keys.model_files(validate_model_id(model_id)), METADATA_FILE)
        if raw is None:
            raise ModelNotFound(f"no saved model {model_id!r}")
        return json.loads(raw)

    def model_path(self, model_id: str) -> Path:
        """The local directory holding the model's current version (fetched when stale)."""
        self._materialise(validate_model_id(model_id))
        return self.cache.model_path(model_id)

    def load(self, model_id: str) -> BasePredictor:
        return self.cache.load(self.model_path(model_id).name)

    def delete(self, model_id: str) -> None:
        removed = self.redis.delete(keys.model_files(validate_model_id(model_id)))
        shutil.rmtree(self.cache.model_path(model_id), ignore_errors=True)
        if not removed:
            raise ModelNotFound(f"no saved model {model_id!r}")

    def _materialise(self, model_id: str) -> None:
        key = keys.model_files(model_id)
        local = self.cache.model_path(model_id)
        with self._lock:
            version = self.redis.hget(key, keys.MODEL_FILES_VERSION)
            if version is None:
                raise ModelNotFound(f"no saved model {model_id!r}")
            version = version.decode()
            stamp = local / VERSION_FILE
            if stamp.is_file() and stamp.read_text() == version:
                return
            files = self.redis.hgetall(key)  # one consistent snapshot: saves replace the hash whole
            version = files.pop(keys.MODEL_FILES_VERSION.encode(), b"").decode()
            if not version:
                raise ModelNotFound(f"no saved model {model_id!r}")
            self.directory.mkdir(parents=True, exist_ok=True)
            temp = self.directory / f".tmp-{model_id}-{uuid.uuid4().hex}"
            try:
                for name, content in files.items():
                    relative = PurePosixPath(name.decode())
                    if relative.is_absolute() or ".." in relative.parts:  # never write outside the model dir
                        raise ValueError(f"model {model_id!r}: unsafe file name {name!r} in the store")
                    target = temp.joinpath(*relative.parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(content)
                (temp / VERSION_FILE).write_text(version)
                self.cache._swap_in(temp, local)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise


def open_model_store(settings: Any) -> ModelStore | RedisModelStore:
    """The store MODEL_STORE_URI names: empty (or a path) = the local MODEL_DIR; redis://... = Redis."""
    uri = settings.model_store_uri.strip()
    if not uri.startswith(("redis://", "rediss://")):
        return ModelStore(Path(uri) if uri else settings.models_path)
    if uri in ("redis://", "redis:///"):
        from utils.redis_client import redis_from_settings
        client = redis_from_settings(settings, decode=False)
    else:
        client = redis.Redis.from_url(uri, decode_responses=False, socket_connect_timeout=3.0,
                                      socket_timeout=settings.redis_socket_timeout)
    return RedisModelStore(client, settings.models_path)
