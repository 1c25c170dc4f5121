"""The grpcio asyncio server carrying `inference.GRPCInferenceService`, on its own port."""

import grpc

from kinfer_runtime.dataplane.budget import ByteBudget
from kinfer_runtime.dataplane.readiness import Readiness
from kinfer_runtime.dataplane.registry import ModelRegistry
from kinfer_runtime.metrics import RuntimeMetrics
from kinfer_runtime.routes.grpc.service import SERVICE_NAME, InferenceServicer, method_handlers
from kinfer_runtime.tracing import Tracing

__all__ = ["start_grpc_server"]


async def start_grpc_server(
    registry: ModelRegistry,
    readiness: Readiness,
    metrics: RuntimeMetrics,
    *,
    host: str,
    port: int,
    max_message_bytes: int,
    budget: ByteBudget,
    max_concurrent_rpcs: int | None = None,
    max_connection_age_s: float = 0.0,
    max_connection_age_grace_s: float = 0.0,
    tracing: Tracing | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Binds and starts the server on the running event loop; returns it and its port.

    `max_connection_age_s` > 0: connections get GOAWAY at that age (grpcio's
    max_connection_age), and their calls in flight `max_connection_age_grace_s` more.
    Raises RuntimeError when the address cannot be bound.
    """
    age: list[tuple[str, int]] = []
    if max_connection_age_s > 0:
        age = [
            ("grpc.max_connection_age_ms", _ms(max_connection_age_s)),
            ("grpc.max_connection_age_grace_ms", _ms(max_connection_age_grace_s)),
        ]
    server = grpc.aio.server(
        options=[
            *age,
            # The REST body limit, or less (see app.grpc_max_message_bytes); over it grpcio
            # refuses the message as it arrives, before buffering it.
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            # grpcio sets SO_REUSEPORT by default, which lets a second process bind a port
            # that is taken and silently share its traffic: a clash must fail instead.
            ("grpc.so_reuseport", 0),
        ],
        # grpcio reads each message whole before a handler can charge it to the budget: this
        # bounds how many it holds at once (further calls are refused unread).
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    handlers = method_handlers(InferenceServicer(registry, readiness, metrics, budget, tracing))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:  # older grpcio reports a failed bind this way rather than raising
        raise RuntimeError(f"failed to bind to {address}")
    await server.start()
    return server, bound


def _ms(seconds: float) -> int:
    """grpcio's channel arguments are C ints."""
    return max(0, min(int(seconds * 1000), 2**31 - 1))
