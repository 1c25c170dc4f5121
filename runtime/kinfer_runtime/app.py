"""The FastAPI application: routes, the error handler, metrics, and model loading at startup."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from kinfer_runtime import __version__
from kinfer_runtime.routes import (
    health_router,
    inference_routes,
    install_error_handler,
    models_router,
)
from kinfer_runtime.routes._instrumentation import InferenceMetricsMiddleware
from kinfer_runtime.service import InferenceService

__all__ = ["create_app"]


def create_app(service: InferenceService) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Loading runs in the background: the server answers liveness probes meanwhile, and
        # readiness turns true only once the model is loaded and warmed up.
        loading = asyncio.create_task(service.start(), name="kinfer-load")
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
            await service.stop()

    app = FastAPI(
        title="kinfer-runtime",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # First in the routing table: inference is nearly all of the traffic.
        routes=inference_routes(service.registry, service.settings.max_body_bytes),
    )
    install_error_handler(app)
    app.include_router(health_router(service.readiness, service.metrics))
    app.include_router(models_router(service.registry))
    app.add_middleware(InferenceMetricsMiddleware, metrics=service.metrics)
    return app
