"""The ASGI application: the /infer endpoint in front of FastAPI (every other route, the error
handler), model loading at startup, and the gRPC server's lifetime (it runs on the same event
loop, beside uvicorn's)."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from fastapi import FastAPI
from starlette.types import ASGIApp

from kinfer_runtime import __version__
from kinfer_runtime._http import CloseWhileDraining
from kinfer_runtime.config import Settings
from kinfer_runtime.dataplane.budget import ByteBudget
from kinfer_runtime.routes import (
    InferenceEndpoint,
    health_router,
    install_error_handler,
    models_router,
)
from kinfer_runtime.routes.grpc import start_grpc_server
from kinfer_runtime.service import InferenceService

__all__ = ["create_app", "grpc_max_message_bytes"]

log = logging.getLogger(__name__)


async def _start_grpc(service: InferenceService) -> grpc.aio.Server | None:
    settings = service.settings
    if not settings.grpc_port:
        return None
    try:
        server, port = await start_grpc_server(
            service.registry,
            service.readiness,
            service.metrics,
            host=settings.host,
            port=settings.grpc_port,
            max_message_bytes=grpc_max_message_bytes(settings, service.budget),
            budget=service.budget,
            max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
            max_connection_age_s=settings.grpc_max_connection_age_s,
            max_connection_age_grace_s=(
                settings.request_timeout_s
                if settings.grpc_max_connection_age_grace_s is None
                else settings.grpc_max_connection_age_grace_s
            ),
            tracing=service.tracing,
        )
    except RuntimeError as exc:
        service.fail(f"cannot listen on gRPC port {settings.grpc_port}: {exc}")
        return None
    log.info("gRPC (inference.GRPCInferenceService) on port %d", port)
    return server


def grpc_max_message_bytes(settings: Settings, budget: ByteBudget) -> int:
    """The largest gRPC message: the body limit, or less where the calls served at once could
    otherwise hold more than the byte budget. grpcio reads a message whole before a handler
    can charge it, so only the message limit and the call cap bound what it holds unread
    (4 MiB messages in a 1 GiB pod, 64 MiB from 16 GiB)."""
    return max(
        min(settings.max_body_bytes, budget.capacity // settings.grpc_max_concurrent_rpcs), 1
    )


def create_app(service: InferenceService) -> ASGIApp:
    """The ASGI app: the /infer endpoint in front of FastAPI, which serves everything else."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The gRPC server shares this event loop, and so the data plane, with the HTTP one.
        grpc_server = await _start_grpc(service)
        # Loading runs in the background: the server answers liveness probes meanwhile, and
        # readiness turns true only once the model is loaded and warmed up.
        loading = asyncio.create_task(service.start(), name="kinfer-load")
        await service.mirror.start()
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
            if grpc_server is not None:
                # HTTP has drained by now; calls in flight get as long as a request may take.
                await grpc_server.stop(grace=service.settings.request_timeout_s)
            await service.stop()

    app = FastAPI(
        title="kinfer-runtime",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handler(app)
    app.include_router(health_router(service.readiness, service.metrics))
    app.include_router(models_router(service.registry))
    settings = service.settings
    readiness = service.readiness
    endpoint = InferenceEndpoint(
        app,
        service.registry,
        service.metrics,
        settings.max_body_bytes,
        service.budget,
        service.mirror,
        classified_port=settings.classified_port or None,
        tracing=service.tracing,
    )
    # After SIGTERM keep-alive clients are told to reconnect (elsewhere) on their next response.
    return CloseWhileDraining(endpoint, lambda: readiness.draining)
