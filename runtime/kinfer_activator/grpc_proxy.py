"""gRPC through the activator: a generic unary passthrough on each model's grpcPort.

Messages stay bytes end to end (no deserializer on either side); the only thing read from a
request is the model name, field 1 of every `inference.GRPCInferenceService/Model*` request
(ModelInfer, ModelMetadata, ModelReady), to refuse a model this port does not serve. Held,
timed-out and refused requests behave as over REST, with gRPC codes: NOT_FOUND for another
model, UNAVAILABLE for a full queue or a hold past maxHoldSeconds (never a hang).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import grpc
import grpc.aio

from kinfer_activator.metrics import ActivatorMetrics
from kinfer_activator.pool import HoldTimeout, ModelPool, QueueFull
from kinfer_activator.proxy import COLD_START_HEADER

__all__ = ["GrpcFront", "model_name_field"]

log = logging.getLogger(__name__)

_MODEL_METHODS: Final = "/inference.GRPCInferenceService/Model"
_DROPPED_METADATA: Final = frozenset({"grpc-timeout", "user-agent", "content-type", "te"})


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
        shift += 7


def model_name_field(message: bytes) -> str | None:
    """Field 1 (a string) of a protobuf message, scanning its top-level fields; None when
    absent or unreadable (the runtime then answers for itself)."""
    i = 0
    try:
        while i < len(message):
            key, i = _varint(message, i)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, i = _varint(message, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            elif wire == 2:
                length, i = _varint(message, i)
                if field == 1:
                    return message[i : i + length].decode()
                i += length
            else:
                return None
    except (ValueError, UnicodeDecodeError):
        return None
    return None


class GrpcFront:
    """One grpc.aio server per model's gRPC port (a running server cannot drop a port)."""

    def __init__(
        self, pools: Callable[[int], ModelPool | None], metrics: ActivatorMetrics, host: str
    ) -> None:
        self._pools = pools
        self._metrics = metrics
        self._host = host
        self._servers: dict[int, grpc.aio.Server] = {}
        self._channels: dict[tuple[str, int], grpc.aio.Channel] = {}

    @property
    def ports(self) -> set[int]:
        return set(self._servers)

    async def open(self, grpc_port: int, http_port: int) -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([_Passthrough(self, http_port)])
        if server.add_insecure_port(f"{self._host}:{grpc_port}") == 0:
            raise OSError(f"cannot listen on {grpc_port}")
        await server.start()
        self._servers[grpc_port] = server

    async def close(self, grpc_port: int, grace_s: float | None = None) -> None:
        server = self._servers.pop(grpc_port, None)
        if server is not None:
            await server.stop(grace_s)

    async def drain(self, grace_s: float) -> None:
        for port in list(self._servers):
            await self.close(port, grace_s)
        for channel in self._channels.values():
            await channel.close()

    def channel(self, address: str, port: int) -> grpc.aio.Channel:
        key = (address, port)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = grpc.aio.insecure_channel(f"{address}:{port}")
        return channel

    async def call(
        self,
        http_port: int,
        method: str,
        request: bytes,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> bytes:
        pool = self._pools(http_port)
        if pool is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no model is served on this port")
        assert pool is not None
        route = pool.route
        if method.startswith(_MODEL_METHODS):
            named = model_name_field(request)
            if named is not None and named != route.model:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"unknown model '{named}': this address serves '{route.model}'",
                )
        try:
            lease = await pool.acquire()
        except QueueFull:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "too many requests held")
        except HoldTimeout:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"no replica of '{route.model}' became ready in {route.max_hold_seconds:g} s",
            )
        labels = route.key
        try:
            if lease.pod.grpc_port is None:
                self._metrics.forwarded.labels(*labels, "UNAVAILABLE").inc()
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the replica exposes no gRPC port")
            assert lease.pod.grpc_port is not None
            metadata = [
                (key, value)
                for key, value in context.invocation_metadata() or ()
                if not key.startswith(":") and key not in _DROPPED_METADATA
            ]
            upstream: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel(
                lease.pod.address, lease.pod.grpc_port
            ).unary_unary(method)
            try:
                response: bytes = await upstream(
                    request, metadata=metadata, timeout=context.time_remaining()
                )
            except grpc.aio.AioRpcError as exc:
                self._metrics.forwarded.labels(*labels, exc.code().name).inc()
                await context.abort(exc.code(), exc.details() or "")
        finally:
            pool.release(lease, None)
        self._metrics.forwarded.labels(*labels, "OK").inc()
        if lease.waited_s is not None:
            context.set_trailing_metadata(((COLD_START_HEADER, f"{lease.waited_s:.3f}"),))
        return response


class _Passthrough(grpc.GenericRpcHandler):
    def __init__(self, front: GrpcFront, http_port: int) -> None:
        self._front = front
        self._http_port = http_port

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        front, port = self._front, self._http_port

        async def behaviour(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            return await front.call(port, method, request, context)

        return grpc.unary_unary_rpc_method_handler(behaviour)
