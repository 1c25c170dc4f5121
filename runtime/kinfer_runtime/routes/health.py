"""Server-level endpoints: metadata, liveness, readiness, Prometheus metrics."""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kinfer_runtime import __version__
from kinfer_runtime.dataplane.readiness import Readiness
from kinfer_runtime.errors import ModelNotReady
from kinfer_runtime.metrics import RuntimeMetrics
from kinfer_runtime.schemas.metadata import LiveResponse, ReadyResponse, ServerMetadataResponse

__all__ = ["EXTENSIONS", "health_router"]

EXTENSIONS = ["binary_tensor_data"]


def health_router(readiness: Readiness, metrics: RuntimeMetrics) -> APIRouter:
    router = APIRouter()

    @router.get("/v2")
    async def server_metadata() -> ServerMetadataResponse:
        return ServerMetadataResponse(name="kinfer", version=__version__, extensions=EXTENSIONS)

    @router.get("/v2/health/live")
    async def live() -> LiveResponse:
        # Up as soon as the server listens, so a slow model load is not mistaken for a hang.
        return LiveResponse(live=True)

    @router.get("/v2/health/ready")
    async def ready() -> ReadyResponse:
        if not readiness.ready:
            raise ModelNotReady(f"server is not ready ({readiness.phase.value})")
        return ReadyResponse(ready=True)

    @router.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
