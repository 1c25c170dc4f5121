"""POST .../infer: read the body, decode, hand to the data plane, encode. Nothing else.

A plain ASGI endpoint in front of the FastAPI app rather than a route inside it, on purpose:
profiled with py-spy under load (binary payload, 32 clients), FastAPI's and Starlette's
middleware layers and routing took ~40% of the event loop's busy time per inference request,
more than decoding, validating, batching and encoding together. Inference is nearly all of the
traffic and has no parameters for FastAPI to validate; every other path goes to FastAPI as
before. Errors still become responses through `routes.errors.error_response`, the one mapping,
and the endpoint counts and times each request itself (status and protocol labels).

Traffic classes (`traffic_class`): a request counts as shadow or pinned only when it arrived
on the classified listener, the port that only the mirror and the pinned route rule reach; on
the public port it counts as live whatever its headers, so no client can hide its requests
(and their failures) from canary analysis by setting a marker.
"""

import re
import time
from typing import Final, Literal

import orjson
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from kinfer_runtime.dataplane.budget import ByteBudget
from kinfer_runtime.dataplane.model import ServedModel
from kinfer_runtime.dataplane.registry import ModelRegistry
from kinfer_runtime.errors import HandlerFailed, InvalidInput
from kinfer_runtime.handlers import HandlerRequest
from kinfer_runtime.metrics import RuntimeMetrics
from kinfer_runtime.mirror import SHADOW_HEADER, Mirror
from kinfer_runtime.routes._admission import BodyCharge
from kinfer_runtime.routes._body import read_body
from kinfer_runtime.routes.errors import error_response, http_status
from kinfer_runtime.schemas.inference import (
    HEADER_LENGTH,
    OutputRequest,
    decode_request,
    encode_response,
    parse_header_length,
    select_outputs,
)
from kinfer_runtime.tracing import RequestTrace, Tracing, stage

__all__ = [
    "CACHE_HEADER",
    "COLD_START_MARKER_HEADER",
    "PINNED_MARKER_HEADER",
    "QUEUE_DEPTH_HEADER",
    "InferenceEndpoint",
    "TrafficClass",
    "traffic_class",
]

PINNED_MARKER_HEADER: Final = "x-kinfer-pinned"
"""Set to `true` by the HTTPRoute rule of a header-pinned canary, which sends to the classified
port: such requests are counted in kinfer_pinned_requests_total instead."""

COLD_START_MARKER_HEADER: Final = "x-kinfer-cold-start"
"""Set to `true` by the activator on a request it held for a cold start, sent to the classified
port: counted with source="cold_start", which canary analysis leaves out."""
QUEUE_DEPTH_HEADER: Final = "x-kinfer-queue-depth"
"""On every inference answer: the inference requests still in flight here, this one excluded;
the activator's least-queue routing reads it to see what other senders have queued."""

TrafficClass = Literal["live", "shadow", "pinned", "cold_start"]

_PATH: Final = re.compile(
    r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/(?P<action>infer|predict)"
)
# POST .../predict takes a raw image (or any bytes) for a model with a handler.
_PREDICT_TYPES: Final = ("image/", "application/octet-stream")
_JSON: Final = [(b"content-type", b"application/json")]
_BINARY: Final = [(b"content-type", b"application/octet-stream")]
_HEADER_LENGTH: Final = HEADER_LENGTH.encode()
_SHADOW: Final = SHADOW_HEADER.encode()
_PINNED: Final = (PINNED_MARKER_HEADER.encode(), b"true")
CACHE_HEADER: Final = "x-kinfer-cache"
"""`hit` on a response the response cache answered (the model did not run)."""
_CACHE_HIT: Final = (CACHE_HEADER.encode(), b"hit")
_TRACE_HEADERS: Final = (b"traceparent", b"tracestate")
_COLD_START: Final = (COLD_START_MARKER_HEADER.encode(), b"true")
_QUEUE_DEPTH: Final = QUEUE_DEPTH_HEADER.encode()


def traffic_class(scope: Scope, classified_port: int | None) -> TrafficClass:
    """live, unless the request came in on `classified_port` carrying a marker: a client
    can set any header, but only kinfer's own senders reach that port."""
    server = scope.get("server")
    if not classified_port or server is None or server[1] != classified_port:
        return "live"
    headers = scope["headers"]
    if _PINNED in headers:
        return "pinned"  # the gateway's pinned rule
    if _COLD_START in headers:
        return "cold_start"  # the activator, for a request held while the model was at zero
    if any(key == _SHADOW for key, _ in headers):
        return "shadow"  # a stable runtime's mirror
    return "live"


class InferenceEndpoint:
    """ASGI app: serves the two infer paths itself and passes everything else to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        registry: ModelRegistry,
        metrics: RuntimeMetrics,
        max_body_bytes: int,
        budget: ByteBudget,
        mirror: Mirror | None = None,
        classified_port: int | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self._tracing = tracing
        self._budget = budget
        self._registry = registry
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes
        self._mirror = mirror
        self._classified_port = classified_port
        self._inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = _PATH.fullmatch(scope["path"])
            if match is not None:
                await self._measured(
                    scope, receive, send, match["name"], match["version"], match["action"]
                )
                return
        await self.app(scope, receive, send)

    async def _measured(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str,
        version: str | None,
        action: str = "infer",
    ) -> None:
        started = time.perf_counter()
        status = 200
        metrics = self._metrics
        # Mirrored or pinned requests are counted apart; a mirrored one is never mirrored again.
        kind = traffic_class(scope, self._classified_port)
        trace = None
        if self._tracing is not None:
            carrier = {
                key.decode(): value.decode("latin-1")
                for key, value in scope["headers"]
                if key in _TRACE_HEADERS
            }
            trace = self._tracing.start(carrier, name, version or "", "rest")
        cache = "off"
        metrics.inflight.inc()
        self._inflight += 1
        try:
            try:
                if scope["method"] != "POST":
                    raise HTTPException(405, headers={"Allow": "POST"})
                content, headers, body = await self._infer(
                    scope, receive, name, version, action, trace
                )
                if trace is not None:
                    served = self._registry.get(name, version)
                    if served.response_cache is not None:
                        cache = "hit" if _CACHE_HIT in headers else "miss"
            except Exception as exc:
                status = http_status(exc)
                await error_response(exc)(scope, receive, send)
                return
            depth = str(self._inflight - 1).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*headers, (_QUEUE_DEPTH, depth)],
                }
            )
            await send({"type": "http.response.body", "body": content})
            if self._mirror is not None and kind != "shadow":
                # Unversioned: the candidate serves another version of the same model.
                self._mirror.offer(f"/v2/models/{name}/{action}", scope["headers"], body)
        finally:
            if trace is not None:
                trace.end(status, cache)
            metrics.inflight.dec()
            self._inflight -= 1
            seconds = time.perf_counter() - started
            if kind == "pinned":
                metrics.pinned_request_done(status, seconds, "rest")
            else:
                metrics.request_done(status, seconds, "rest", kind)

    async def _infer(
        self,
        scope: Scope,
        receive: Receive,
        name: str,
        version: str | None,
        action: str,
        trace: RequestTrace | None,
    ) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        model = self._registry.get(name, version)
        model.admit()  # 503 before reading a body we would not process
        request_headers = Headers(scope=scope)
        # Charged before the body is read (413/503 refuse it unread), released once answered.
        charge = BodyCharge(self._budget, request_headers)
        try:
            with stage(trace, "decode"):
                stream = Request(scope, receive).stream()
                body = await read_body(stream, request_headers, self._max_body_bytes, charge)
                if action != "predict":
                    json_length = parse_header_length(request_headers.get(HEADER_LENGTH))
                    decoded = decode_request(body, json_length)
                    selected = select_outputs(decoded, model.output_names)
            if action == "predict":
                content = await _predict(
                    model, body, request_headers.get("content-type", ""), trace
                )
                return content, [(b"content-length", str(len(content)).encode()), *_JSON], body
            outputs, cached = await model.infer_request(
                decoded.inputs,
                priority=decoded.priority,
                timeout_us=decoded.timeout_us,
                trace=trace,
            )
            with stage(trace, "postprocess"):
                content, header_length = encode_response(
                    model.name, model.version, decoded.id, outputs, selected
                )
        finally:
            charge.release()
        headers = [(b"content-length", str(len(content)).encode())]
        if cached:
            headers.append(_CACHE_HIT)
        if header_length is None:
            headers += _JSON
        else:
            headers += [*_BINARY, (_HEADER_LENGTH, str(header_length).encode())]
        return content, headers, body


async def _predict(
    model: ServedModel, body: bytes, content_type: str, trace: RequestTrace | None
) -> bytes:
    """POST .../predict: the raw body to the handler; its JSON, or its tensors as an OIP
    response (JSON)."""
    if model.handler is None:
        raise InvalidInput(f"model {model.name!r} has no handler: POST .../infer with tensors")
    kind = content_type.split(";")[0].strip().lower()
    if not kind.startswith(_PREDICT_TYPES):
        raise InvalidInput(
            f"POST .../predict takes an image (Content-Type image/*), not {kind or 'nothing'}"
        )
    result = await model.handle(HandlerRequest({}, body=body, content_type=kind), trace=trace)
    if model.handler.tensor_outputs:
        selected = [OutputRequest(name, False) for name in model.handler.tensor_outputs]
        content, _ = encode_response(model.name, model.version, None, result, selected)
        return content
    try:
        return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise HandlerFailed(f"handler postprocess returned non-JSON: {exc}") from exc
