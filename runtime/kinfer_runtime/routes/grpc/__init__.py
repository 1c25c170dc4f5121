"""The Open Inference Protocol over gRPC: a thin front-end on the same data plane as REST."""

from kinfer_runtime.routes.grpc.errors import grpc_status
from kinfer_runtime.routes.grpc.server import start_grpc_server
from kinfer_runtime.routes.grpc.service import SERVICE_NAME, InferenceServicer, method_handlers

__all__ = [
    "SERVICE_NAME",
    "InferenceServicer",
    "grpc_status",
    "method_handlers",
    "start_grpc_server",
]
