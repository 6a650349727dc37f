"""Who may call the server: TLS (optionally mutual) and API keys with per-key rate limits.

Both are off unless configured, so a laptop needs nothing:

* TLS_CERT_FILE + TLS_KEY_FILE serve TLS; TLS_CLIENT_CA_FILE also requires client certificates
  signed by that CA (mutual TLS). Unreadable or mismatched files stop the start naming the variable.
* API_KEYS and/or API_KEYS_FILE turn API keys on. Clients send ``authorization: Bearer <key>``
  or ``x-api-key: <key>``. Only SHA-256 digests of keys are stored. Health and reflection stay
  open for probes and tooling. The key file (JSON) looks like::

      {"keys": [{"name": "desk-a", "key_sha256": "<64 hex digits>",
                 "services": ["gpu_api.realtime.RealTimeService"],   # optional: all when absent
                 "rate_per_second": 200, "burst": 400}]}             # optional: unlimited

  API_KEYS holds the same JSON inline, or ``name:sha256hex`` entries separated by commas
  (every service, no rate limit). The file is re-read when it changes, so a key is rotated by
  adding the new entry, moving clients over, then deleting the old one - no restart.

``python -m services.security new-key NAME`` prints a fresh key and its file entry.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import grpc

from services.errors import ServiceError, invalid

log = logging.getLogger(__name__)

# Services any caller may use: load balancers probe health, grpcurl needs reflection.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                           "grpc.reflection.v1.ServerReflection"})
KEY_FILE_RELOAD_SECONDS = 2.0
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _invalid_setting(name: str, value: object, problem: str) -> SystemExit:
    from config.settings import InvalidSettings
    return InvalidSettings(f"invalid setting {name}={str(value)!r}: {problem}")


# --------------------------------------------------------------------------- TLS
def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _invalid_setting(name, path, f"cannot read it ({exc.strerror or exc})") from None


def server_credentials(settings: Any) -> grpc.ServerCredentials | None:
    """TLS credentials from TLS_CERT_FILE/TLS_KEY_FILE (+ TLS_CLIENT_CA_FILE), None for plaintext."""
    cert, key, client_ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    if not (cert or key or client_ca):
        return None
    if not cert or not key:
        missing = "TLS_KEY_FILE" if cert else "TLS_CERT_FILE"
        raise _invalid_setting(missing, "", "TLS needs both TLS_CERT_FILE and TLS_KEY_FILE"
                               + (" (TLS_CLIENT_CA_FILE adds client verification on top)" if client_ca else ""))
    chain, private_key = _read("TLS_CERT_FILE", cert), _read("TLS_KEY_FILE", key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:  # gRPC only complains at the first handshake; check the pair now
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise _invalid_setting("TLS_CERT_FILE", cert, f"does not load with TLS_KEY_FILE {key!r} "
                               f"(PEM certificate chain and its private key expected): {exc.reason or exc}") from None
    roots = None
    if client_ca:
        roots = _read("TLS_CLIENT_CA_FILE", client_ca)
        try:
            context.load_verify_locations(cadata=roots.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise _invalid_setting("TLS_CLIENT_CA_FILE", client_ca, f"is not a PEM CA certificate: {exc}") from None
    log.info("gRPC TLS on%s", " with client certificates required (mutual TLS)" if roots else "")
    return grpc.ssl_server_credentials([(private_key, chain)], root_certificates=roots,
                                       require_client_auth=roots is not None)


def add_port(server: grpc.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Bind ``address`` with TLS credentials, or plaintext for None; the bound port (0 = failed)."""
    if credentials is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, credentials)


# ---------------------------------------------------------------------- API keys
class KeyFileError(ValueError):
    """A key definition is malformed; the message names the entry and field."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes                       # SHA-256 of the key; the key itself is never kept
    services: frozenset[str] | None     # None = every service
    rate_per_second: float | None       # None = unlimited
    burst: float

    def may_call(self, service: str) -> bool:
        return self.services is None or service in self.services


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
        raise KeyFileError(f"{where} must be a positive number, got {value!r}")
    return float(value)


def _entry(index: int, entry: Any, known_services: Sequence[str] | None) -> ApiKey:
    where = f"keys[{index}]"
    if not isinstance(entry, dict):
        raise KeyFileError(f"{where} must be an object with name and key_sha256")
    unknown = sorted(set(entry) - {"name", "key_sha256", "services", "rate_per_second", "burst"})
    if unknown:
        hint = " (store the key's SHA-256 in key_sha256, never the key)" if "key" in unknown else ""
        raise KeyFileError(f"{where} has unknown field(s) {', '.join(unknown)}{hint}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise KeyFileError(f"{where}.name must be a non-empty string")
    digest = entry.get("key_sha256")
    if not isinstance(digest, str) or not _HEX_DIGEST.match(digest.lower()):
        raise KeyFileError(f"{where}.key_sha256 must be 64 hex digits (sha256 of the key)")
    services = entry.get("services")
    if services is not None:
        if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
            raise KeyFileError(f"{where}.services must be a list of service names")
        strange = [s for s in services if known_services is not None and s not in known_services]
        if strange:
            raise KeyFileError(f"{where}.services: unknown service(s) {', '.join(strange)}; "
                               f"known: {', '.join(known_services or ())}")
    rate = entry.get("rate_per_second")
    rate = None if rate is None else _number(f"{where}.rate_per_second", rate)
    burst = entry.get("burst")
    burst = max(rate or 1.0, 1.0) if burst is None else _number(f"{where}.burst", burst)
    return ApiKey(name.strip(), bytes.fromhex(digest), None if services is None else frozenset(services),
                  rate, max(burst, 1.0))


def parse_keys(text: str, known_services: Sequence[str] | None = None) -> list[ApiKey]:
    """Keys from the JSON document (``{"keys": [...]}``) or from ``name:sha256hex,...``."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise KeyFileError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise KeyFileError('expected an object {"keys": [{"name": ..., "key_sha256": ...}, ...]}')
        entries = document["keys"]
    else:
        entries = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, colon, digest = part.partition(":")
            if not colon:
                raise KeyFileError(f"entry {part[:12]!r}... must be name:sha256hex")
            entries.append({"name": name, "key_sha256": digest.strip()})
    keys = [_entry(index, entry, known_services) for index, entry in enumerate(entries)]
    for kind, values in (("name", [k.name for k in keys]), ("key_sha256", [k.digest for k in keys])):
        if len(set(values)) != len(values):
            raise KeyFileError(f"two keys share a {kind}")
    return keys


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` is thread-safe."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self.updated = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1.0:
                return False
            self.tokens -= 1.0
            return True


class KeyRing:
    """The configured keys (inline + file, the file re-read when it changes) and their buckets."""

    def __init__(self, inline: str = "", path: str = "", known_services: Sequence[str] | None = None) -> None:
        self.inline, self.path, self.known_services = inline, path, known_services
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, float, float], TokenBucket] = {}
        self._file_stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._inline_keys = self._parse("API_KEYS", inline, inline)
        self._file_keys = self._read_file(startup=True) if path else []

    @classmethod
    def from_settings(cls, settings: Any, known_services: Sequence[str] | None = None) -> "KeyRing":
        return cls(settings.api_keys, settings.api_keys_file, known_services)

    def _parse(self, variable: str, shown: str, text: str) -> list[ApiKey]:
        try:
            return parse_keys(text, self.known_services)
        except KeyFileError as exc:
            raise _invalid_setting(variable, shown if variable == "API_KEYS_FILE" else "<redacted>", str(exc)) from None

    def _read_file(self, startup: bool = False) -> list[ApiKey]:
        try:
            stat = os.stat(self.path)
            self._file_stamp = (stat.st_mtime, stat.st_size)
            return self._parse("API_KEYS_FILE", self.path, _read("API_KEYS_FILE", self.path).decode("utf-8"))
        except (OSError, UnicodeDecodeError, SystemExit) as exc:
            if startup:
                if isinstance(exc, SystemExit):
                    raise
                raise _invalid_setting("API_KEYS_FILE", self.path, f"cannot read it ({exc})") from None
            log.error("API_KEYS_FILE %s could not be re-read (%s); keeping the keys loaded before", self.path, exc)
            return self._file_keys

    @property
    def enabled(self) -> bool:
        return bool(self.path or self._inline_keys)

    def keys(self) -> list[ApiKey]:
        if self.path and time.monotonic() - self._checked >= KEY_FILE_RELOAD_SECONDS:
            with self._lock:
                self._checked = time.monotonic()
                try:
                    stat = os.stat(self.path)
                    changed = (stat.st_mtime, stat.st_size) != self._file_stamp
                except OSError:
                    changed = True
                if changed:
                    self._file_keys = self._read_file()
                    log.info("API_KEYS_FILE reloaded: %d key(s)", len(self._file_keys))
        return [*self._inline_keys, *self._file_keys]

    def find(self, presented: str) -> ApiKey | None:
        """The key whose digest matches; every digest is compared (constant time each)."""
        digest, found = key_digest(presented), None
        for key in self.keys():
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    def admit(self, key: ApiKey) -> bool:
        if key.rate_per_second is None:
            return True
        slot = (key.name, key.rate_per_second, key.burst)  # a changed limit starts a fresh bucket
        with self._lock:
            bucket = self._buckets.get(slot) or self._buckets.setdefault(
                slot, TokenBucket(key.rate_per_second, key.burst))
        return bucket.take()


def presented_key(metadata: Iterable[tuple[str, Any]]) -> str | None:
    for name, value in metadata or ():
        if isinstance(value, bytes):
            continue
        if name == "x-api-key" and value.strip():
            return value.strip()
        if name == "authorization":
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


# ------------------------------------------------------------------ interceptor
class _Malformed:
    """Stands in for a request whose bytes did not parse (gRPC would answer INTERNAL)."""


MALFORMED = _Malformed()


def _tolerant(deserialize: Callable | None) -> Callable | None:
    if deserialize is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception:
            return MALFORMED
    return parse


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Turns unparsable requests into INVALID_ARGUMENT and, with keys configured, admits only
    known keys for their services within their rate. Goes inside ObservabilityInterceptor,
    so refusals are counted and logged like any other status."""

    def __init__(self, keys: KeyRing | None, metrics: Any) -> None:
        self.keys = keys if keys is not None and keys.enabled else None
        self.metrics = metrics
        self._wrapped: dict[str, tuple[Any, Any]] = {}  # built once per method (see interceptors.py)

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        cached = self._wrapped.get(handler_call_details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, handler_call_details.method)
        self._wrapped[handler_call_details.method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: Any, method_path: str) -> Any:
        service = method_path.lstrip("/").rsplit("/", 1)[0]
        check = self._checker(service)
        request_type = getattr(getattr(handler.request_deserializer, "__self__", None), "DESCRIPTOR", None)
        what = f"is not a valid {request_type.full_name if request_type else 'request'} message"
        deserialize = _tolerant(handler.request_deserializer)

        def requests(iterator: Iterator) -> Iterator:
            for request in iterator:
                if request is MALFORMED:
                    raise invalid("request", what)
                yield request

        def prepare(request: Any, context: grpc.ServicerContext, streaming: bool) -> Any:
            check(context)
            if streaming:
                return requests(request)
            if request is MALFORMED:
                raise invalid("request", what)
            return request

        def unary(behavior: Callable, streaming: bool) -> Callable:
            return lambda request, context: behavior(prepare(request, context, streaming), context)

        def stream(behavior: Callable, streaming: bool) -> Callable:
            def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator:
                yield from behavior(prepare(request, context, streaming), context)
            return wrapper

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream, True), deserialize,
                                                         handler.response_serializer)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream, False), deserialize,
                                                        handler.response_serializer)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary, True), deserialize,
                                                        handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary, False), deserialize,
                                                   handler.response_serializer)

    def _checker(self, service: str) -> Callable[[grpc.ServicerContext], None]:
        if self.keys is None or service in OPEN_SERVICES:
            return lambda context: None
        return lambda context: self._authorize(service, context)

    def _refuse(self, reason: str, code: grpc.StatusCode, message: str) -> ServiceError:
        self.metrics.auth_rejections.labels(reason=reason).inc()
        return ServiceError(code, message)

    def _authorize(self, service: str, context: grpc.ServicerContext) -> None:
        presented = presented_key(context.invocation_metadata())
        if presented is None:
            raise self._refuse("missing_key", grpc.StatusCode.UNAUTHENTICATED,
                               "an API key is required: send metadata 'authorization: Bearer <key>' or 'x-api-key'")
        key = self.keys.find(presented)
        if key is None:  # never log or echo the key
            log.info("refused an unknown API key from %s", context.peer())
            raise self._refuse("unknown_key", grpc.StatusCode.UNAUTHENTICATED, "the API key is not valid")
        if not key.may_call(service):
            raise self._refuse("permission_denied", grpc.StatusCode.PERMISSION_DENIED,
                               f"API key {key.name!r} may not call {service}")
        if not self.keys.admit(key):
            raise self._refuse("rate_limited", grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"API key {key.name!r} is over its rate limit ({key.rate_per_second:g}/s, "
                               f"burst {key.burst:g}); retry shortly")


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] != "new-key":
        print("usage: python -m services.security new-key NAME", file=sys.stderr)
        return 2
    key = secrets.token_urlsafe(32)
    print(f"key (give it to the client, store it nowhere else): {key}")
    print(json.dumps({"name": argv[1], "key_sha256": key_digest(key).hex()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
