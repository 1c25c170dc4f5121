"""Per-model endpoints: metadata and readiness, with and without a version in the path."""

from collections.abc import Sequence

from fastapi import APIRouter

from kinfer_runtime.backends.base import TensorSpec
from kinfer_runtime.dataplane.registry import ModelRegistry
from kinfer_runtime.schemas.metadata import (
    ModelMetadataResponse,
    ModelReadyResponse,
    TensorMetadata,
)

__all__ = ["models_router"]


def _tensors(specs: Sequence[TensorSpec]) -> list[TensorMetadata]:
    """A backend's signature as wire metadata (schemas stay below the backends)."""
    return [TensorMetadata(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in specs]


def models_router(registry: ModelRegistry) -> APIRouter:
    router = APIRouter()

    def metadata(name: str, version: str | None) -> ModelMetadataResponse:
        model = registry.get(name, version)
        backend = model.backend
        return ModelMetadataResponse(
            name=model.name,
            versions=[model.version],
            platform=backend.platform,
            inputs=_tensors(backend.signature.inputs),
            outputs=_tensors(backend.signature.outputs),
        )

    def ready(name: str, version: str | None) -> ModelReadyResponse:
        model = registry.get(name, version)
        model.require_ready()
        return ModelReadyResponse(name=model.name, ready=True)

    @router.get("/v2/models/{name}")
    async def model_metadata(name: str) -> ModelMetadataResponse:
        return metadata(name, None)

    @router.get("/v2/models/{name}/versions/{version}")
    async def model_version_metadata(name: str, version: str) -> ModelMetadataResponse:
        return metadata(name, version)

    @router.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> ModelReadyResponse:
        return ready(name, None)

    @router.get("/v2/models/{name}/versions/{version}/ready")
    async def model_version_ready(name: str, version: str) -> ModelReadyResponse:
        return ready(name, version)

    return router
