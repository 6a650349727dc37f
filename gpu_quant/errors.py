"""gRPC failures as typed Python exceptions that carry the server's message.

    try:
        client.bars.get("NOPE")
    except gpu_quant.NotFound as exc:
        print(exc.message)          # the server's text, e.g. "symbol 'NOPE' has no bars"
"""
from __future__ import annotations

import grpc


class GqError(Exception):
    """Base of every error the SDK raises."""


class RpcError(GqError):
    """A call the server (or the channel) answered with a non-OK gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, method: str = "", code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        where = f" ({self.method})" if self.method else ""
        return f"{self.code.name}{where}: {self.message}"


class InvalidArgument(RpcError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RpcError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RpcError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(RpcError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(RpcError):
    """The server (or its Redis) cannot be reached; idempotent calls were retried first."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(RpcError):
    """Rate limit, queue full or a message over the size limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(RpcError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(RpcError):
    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(RpcError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(RpcError):
    code = grpc.StatusCode.CANCELLED


class Internal(RpcError):
    code = grpc.StatusCode.INTERNAL


class Unimplemented(RpcError):
    code = grpc.StatusCode.UNIMPLEMENTED


class JobFailed(GqError):
    """A job ended FAILED or CANCELLED; `job` is its final state (a dict, see Job)."""

    def __init__(self, job: dict) -> None:
        self.job = job
        reason = job.get("error_message") or job.get("status", "")
        super().__init__(f"job {job.get('job_id')} {job.get('status', '').lower()}: {reason}")


_BY_CODE = {cls.code: cls for cls in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, Unavailable,
                                      ResourceExhausted, Unauthenticated, PermissionDenied, DeadlineExceeded,
                                      Cancelled, Internal, Unimplemented)}


def from_rpc_error(error: grpc.RpcError, method: str = "") -> RpcError:
    """The typed exception for a failed call (RpcError itself for codes without a class)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else None) or str(error)
    return _BY_CODE.get(code, RpcError)(message, method=method, code=code)
