"""The one place where exceptions become gRPC status codes, as `routes.errors` does for HTTP."""

import logging
from typing import Final

import grpc

from kinfer_runtime.errors import (
    HandlerFailed,
    InferenceFailed,
    InvalidInput,
    KinferError,
    MemoryBudgetFull,
    ModelLoadError,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    QueueFull,
)

__all__ = ["grpc_status"]

log = logging.getLogger(__name__)

_CODES: Final[dict[type[KinferError], grpc.StatusCode]] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # No room at the request's priority level: the server's capacity, which retrying later
    # may find; gRPC's own code for an exhausted resource.
    QueueFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # Request memory in flight is at the budget: the same, for bytes rather than requests.
    MemoryBudgetFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    InferenceFailed: grpc.StatusCode.INTERNAL,
    HandlerFailed: grpc.StatusCode.INTERNAL,
    ModelLoadError: grpc.StatusCode.INTERNAL,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    # Queue timeout and request deadline: the request never ran (or was dropped); retryable.
    Overloaded: grpc.StatusCode.UNAVAILABLE,
}


def grpc_status(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message a client gets for an exception raised while serving."""
    if isinstance(exc, KinferError):
        # The most specific class that has a code: QueueFull before its base Overloaded.
        code = next(
            (_CODES[kind] for kind in type(exc).__mro__ if kind in _CODES),
            grpc.StatusCode.INTERNAL,
        )
        return code, str(exc)
    log.error("unexpected error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"
