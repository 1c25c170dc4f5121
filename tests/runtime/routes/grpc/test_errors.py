"""Each domain error maps to one gRPC status code, with the message intact."""

import grpc
import pytest
from kinfer_runtime.errors import (
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
    QueueFull,
    QueueTimeout,
)
from kinfer_runtime.routes.grpc import grpc_status


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidInput("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (ModelNotFound("bad"), grpc.StatusCode.NOT_FOUND),
        (ModelNotReady("bad"), grpc.StatusCode.UNAVAILABLE),
        (QueueTimeout("bad"), grpc.StatusCode.UNAVAILABLE),
        (Overloaded("bad"), grpc.StatusCode.UNAVAILABLE),
        (QueueFull("bad"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (PayloadTooLarge("bad"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (InferenceFailed("bad"), grpc.StatusCode.INTERNAL),
    ],
)
def test_domain_errors_map_to_their_code(exc: Exception, code: grpc.StatusCode) -> None:
    assert grpc_status(exc) == (code, "bad")


def test_unexpected_errors_are_internal_without_their_message() -> None:
    assert grpc_status(KeyError("secret")) == (grpc.StatusCode.INTERNAL, "internal error: KeyError")
