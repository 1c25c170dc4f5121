"""Thin FastAPI routes over the data plane; `errors` maps exceptions to statuses."""

from kinfer_runtime.routes.errors import error_response, install_error_handler
from kinfer_runtime.routes.health import EXTENSIONS, health_router
from kinfer_runtime.routes.inference import inference_routes
from kinfer_runtime.routes.models import models_router

__all__ = [
    "EXTENSIONS",
    "error_response",
    "health_router",
    "inference_routes",
    "install_error_handler",
    "models_router",
]
