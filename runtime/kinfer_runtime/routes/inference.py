"""POST .../infer: read the body, decode, hand to the data plane, encode. Nothing else.

Plain Starlette routes inside the FastAPI app, on purpose: FastAPI's per-request parameter
machinery costs ~70 µs here, more than decoding a binary request, and this endpoint has no
parameters for it to validate. Errors still go through the app's one exception handler.
"""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kinfer_runtime.dataplane.registry import ModelRegistry
from kinfer_runtime.routes._body import read_body
from kinfer_runtime.schemas.inference import (
    HEADER_LENGTH,
    decode_request,
    encode_response,
    parse_header_length,
    select_outputs,
)

__all__ = ["inference_routes"]


def inference_routes(registry: ModelRegistry, max_body_bytes: int) -> list[BaseRoute]:
    async def infer(request: Request) -> Response:
        params = request.path_params
        model = registry.get(params["name"], params.get("version"))
        model.admit()  # 503 before reading a body we would not process
        body = await read_body(request, max_body_bytes)
        decoded = decode_request(body, parse_header_length(request.headers.get(HEADER_LENGTH)))
        selected = select_outputs(decoded, [spec.name for spec in model.signature.outputs])
        outputs = await model.infer(
            decoded.inputs, priority=decoded.priority, timeout_us=decoded.timeout_us
        )
        content, header_length = encode_response(
            model.name, model.version, decoded.id, outputs, selected
        )
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(
            content,
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(header_length)},
        )

    return [
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    ]
