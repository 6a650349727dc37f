"""Python SDK of the GPU quant compute platform: `Client` for every gRPC service, typed errors.

The `gq` command (gpu_quant.cli) is built on it. See the README's "Use it: SDK and CLI".
"""
from .backtest import BacktestHandle, BacktestResult
from .client import DEFAULT_TARGET, Client
from .errors import (AlreadyExists, Cancelled, DeadlineExceeded, FailedPrecondition, GqError, Internal,
                     InvalidArgument, JobFailed, NotFound, PermissionDenied, ResourceExhausted, RpcError,
                     Unauthenticated, Unavailable, Unimplemented)
from .jobs import JobHandle
from .transport import RetryPolicy

__version__ = "0.1.0"

__all__ = ["Client", "DEFAULT_TARGET", "RetryPolicy", "JobHandle", "BacktestHandle", "BacktestResult",
           "GqError", "RpcError", "JobFailed", "InvalidArgument", "NotFound", "AlreadyExists", "FailedPrecondition",
           "Unavailable", "ResourceExhausted", "Unauthenticated", "PermissionDenied", "DeadlineExceeded",
           "Cancelled", "Internal", "Unimplemented"]
