"""The one place where exceptions become HTTP responses: `{"error": "..."}` with a status."""

import logging
from typing import Final

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from kinfer_runtime.errors import (
    HandlerFailed,
    InferenceFailed,
    InvalidInput,
    KinferError,
    ModelLoadError,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
)

__all__ = ["error_response", "http_status", "install_error_handler"]

log = logging.getLogger(__name__)

_STATUS: Final[dict[type[KinferError], int]] = {
    InvalidInput: 400,
    ModelNotFound: 404,
    PayloadTooLarge: 413,
    InferenceFailed: 500,
    HandlerFailed: 500,
    ModelLoadError: 500,
    ModelNotReady: 503,
    Overloaded: 503,
}


def _json(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def http_status(exc: Exception) -> int:
    """The HTTP status of an exception raised while serving (500 for anything unexpected)."""
    if isinstance(exc, KinferError):
        return next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, RequestValidationError):
        return 400
    return 500


def error_response(exc: Exception) -> Response:
    if isinstance(exc, KinferError):
        status = http_status(exc)
        retry_after = getattr(exc, "retry_after_s", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return _json(status, str(exc), headers)
    if isinstance(exc, HTTPException):  # routing: unknown path (404), wrong method (405)
        return _json(exc.status_code, str(exc.detail), dict(exc.headers or {}))
    if isinstance(exc, RequestValidationError):  # only path parameters are validated by FastAPI
        return _json(400, "invalid request parameters")
    log.error("unexpected error", exc_info=exc)
    return _json(500, f"internal error: {type(exc).__name__}")


async def _handle(_: Request, exc: Exception) -> Response:
    return error_response(exc)


def install_error_handler(app: FastAPI) -> None:
    for kind in (KinferError, HTTPException, RequestValidationError, Exception):
        app.add_exception_handler(kind, _handle)
