"""Thin protocol front-ends over the data plane: FastAPI for REST (with a plain ASGI endpoint for
/infer), `routes.grpc` for gRPC; `errors` maps exceptions to statuses."""

from kinfer_runtime.routes.errors import error_response, install_error_handler
from kinfer_runtime.routes.health import EXTENSIONS, health_router
from kinfer_runtime.routes.inference import InferenceEndpoint
from kinfer_runtime.routes.models import models_router

__all__ = [
    "EXTENSIONS",
    "InferenceEndpoint",
    "error_response",
    "health_router",
    "install_error_handler",
    "models_router",
]
