"""The channel, the API key on every call, retries with backoff, and typed errors."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc

from .errors import from_rpc_error

_CLIENT_TIMEOUT = object()  # "the client's default deadline" (None means no deadline)

# Same ceiling as the server's default GRPC_MAX_MESSAGE_BYTES (large bar ranges, long equity curves).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for idempotent calls answered UNAVAILABLE (server restarting, Redis away)."""

    attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 3.0
    multiplier: float = 2.0

    def delays(self) -> Iterator[float]:
        delay = self.initial_backoff
        for _ in range(self.attempts - 1):
            yield delay * random.uniform(0.8, 1.2)
            delay = min(delay * self.multiplier, self.max_backoff)


def _read(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).expanduser().read_bytes()


def channel_credentials(tls: Any) -> grpc.ChannelCredentials | None:
    """None/False: plaintext. True: TLS with the system roots. A path: TLS trusting that CA file.
    A dict {"ca": …, "cert": …, "key": …} (paths or PEM bytes): TLS, with a client certificate
    when cert and key are given (mutual TLS)."""
    if tls is None or tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    if isinstance(tls, (str, Path, bytes)):
        return grpc.ssl_channel_credentials(root_certificates=_read(tls))
    if isinstance(tls, dict):
        unknown = set(tls) - {"ca", "cert", "key"}
        if unknown:
            raise ValueError(f"tls: unknown keys {sorted(unknown)}; use ca, cert, key")
        return grpc.ssl_channel_credentials(root_certificates=_read(tls.get("ca")),
                                            private_key=_read(tls.get("key")),
                                            certificate_chain=_read(tls.get("cert")))
    raise TypeError(f"tls must be None, True, a CA file path or a dict, not {type(tls).__name__}")


class Transport:
    """One channel; every call goes through `unary` or `stream`, which add the API key, retry
    what may be retried and turn grpc.RpcError into gpu_quant errors."""

    def __init__(self, target: str, api_key: str | None = None, tls: Any = None, *,
                 timeout: float | None = 60.0, retry: RetryPolicy = RetryPolicy()) -> None:
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        credentials = channel_credentials(tls)
        self.target = target
        self.channel = (grpc.secure_channel(target, credentials, options) if credentials
                        else grpc.insecure_channel(target, options))
        # the server reads `authorization: Bearer <key>` or `x-api-key` (services/security.py)
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.timeout = timeout
        self.retry = retry
        self._stubs: dict[type, Any] = {}

    def stub(self, stub_class: type) -> Any:
        if stub_class not in self._stubs:
            self._stubs[stub_class] = stub_class(self.channel)
        return self._stubs[stub_class]

    def unary(self, method: Callable, request: Any, *, idempotent: bool = True, timeout: Any = _CLIENT_TIMEOUT) -> Any:
        """Call a unary RPC; UNAVAILABLE is retried with backoff only when `idempotent`.
        `timeout`: seconds, None for no deadline (calls that wait for a job), default the client's."""
        deadline = self.timeout if timeout is _CLIENT_TIMEOUT else timeout
        return self._with_retries(lambda: method(request, metadata=self.metadata, timeout=deadline),
                                  method, idempotent)

    def stream(self, method: Callable, request: Any, *, idempotent: bool = True) -> Iterator[Any]:
        """Iterate a server-streaming (or, with an iterator request, bidi) RPC. A stream that
        fails before its first message is retried like a unary call when `idempotent`."""
        name = _method_name(method)
        responses = self._with_retries(lambda: _StartedStream(method(request, metadata=self.metadata)), method, idempotent)
        try:
            yield from responses
        except grpc.RpcError as error:
            raise from_rpc_error(error, name) from None
        finally:
            responses.cancel()

    def _with_retries(self, call: Callable[[], Any], method: Callable, idempotent: bool) -> Any:
        delays = self.retry.delays() if idempotent else iter(())
        while True:
            try:
                return call()
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise from_rpc_error(error, _method_name(method)) from None
                delay = next(delays, None)
                if delay is None:
                    raise from_rpc_error(error, _method_name(method)) from None
                time.sleep(delay)

    def close(self) -> None:
        self.channel.close()


class _StartedStream:
    """A response stream whose first message is read eagerly, so connection errors surface in
    the retry loop rather than in the caller's for-loop."""

    _EMPTY = object()

    def __init__(self, responses: Any) -> None:
        self.responses = responses
        self.first = next(responses, self._EMPTY)

    def __iter__(self) -> Iterator[Any]:
        if self.first is not self._EMPTY:
            yield self.first
        yield from self.responses

    def cancel(self) -> None:
        self.responses.cancel()


def _method_name(method: Callable) -> str:
    raw = getattr(method, "_method", b"")
    return (raw.decode() if isinstance(raw, bytes) else str(raw)).rsplit("/", 1)[-1]


__all__ = ["Transport", "RetryPolicy", "channel_credentials"]
