"""Exception -> gRPC status, in one place. Clients get an actionable message, never a traceback."""
from __future__ import annotations

import logging
import uuid

import grpc
import redis

from utils.redis_client import REDIS_UNAVAILABLE

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An expected failure with the status code and message the client should see."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(field: str, message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}")


def not_found(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.FAILED_PRECONDITION, message)


def resource_exhausted(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def _domain_errors() -> list[tuple[type[BaseException], grpc.StatusCode]]:
    """Engine/data exceptions that describe bad input, imported lazily (no import cycles)."""
    from utils.data.store import InvalidBars, SymbolNotFound
    from utils.engine.backend import BackendUnavailable
    from utils.serving.device_chain import PredictTimeout, PredictUnavailable
    mapping: list[tuple[type[BaseException], grpc.StatusCode]] = [
        (SymbolNotFound, grpc.StatusCode.NOT_FOUND),
        (InvalidBars, grpc.StatusCode.INVALID_ARGUMENT),
        (BackendUnavailable, grpc.StatusCode.FAILED_PRECONDITION),
        (PredictTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
        (PredictUnavailable, grpc.StatusCode.UNAVAILABLE),
    ]
    try:
        from utils.engine.indicators.features import UnknownFeatureError
        mapping.append((UnknownFeatureError, grpc.StatusCode.INVALID_ARGUMENT))
    except ImportError:
        pass
    return mapping


# Details travel percent-encoded in the grpc-message trailer; a client drops trailers over 8 KiB
# (and then sees RESOURCE_EXHAUSTED instead of our message), so a message echoing a huge value is cut.
MAX_DETAILS_BYTES = 4096


def bounded(message: str) -> str:
    size = 0
    for index, char in enumerate(message):
        size += sum(1 if 0x20 <= byte < 0x7F and byte != 0x25 else 3 for byte in char.encode("utf-8", "replace"))
        if size > MAX_DETAILS_BYTES - 16:
            return message[:index] + " ...(truncated)"
    return message


def to_status(exc: BaseException, method: str = "") -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ServiceError):
        return exc.code, bounded(exc.message)
    if isinstance(exc, (*REDIS_UNAVAILABLE, redis.BusyLoadingError)):  # incl. CLUSTERDOWN on a cluster
        return (grpc.StatusCode.UNAVAILABLE,
                "the job and data store (Redis) is unreachable right now; retry in a few seconds")
    if isinstance(exc, NotImplementedError):  # a generated servicer's stub left unimplemented
        return grpc.StatusCode.UNIMPLEMENTED, f"{method or 'this method'} is not implemented by this server"
    for error_type, code in _domain_errors():
        if isinstance(exc, error_type):
            return code, bounded(str(exc))
    reference = uuid.uuid4().hex[:12]
    log.error("internal error in %s (ref %s)", method, reference, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (ref {reference}); the server log has the details"
