"""Forwarding one HTTP request to a runtime pod and its answer back, unchanged but for the
hop-by-hop headers (RFC 9110 section 7.6.1), which belong to each connection."""

from __future__ import annotations

import re
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from kinfer_activator.endpoints import Pod

__all__ = [
    "COLD_START_HEADER",
    "COLD_START_MARKER_HEADER",
    "MARKER_HEADERS",
    "QUEUE_DEPTH_HEADER",
    "error",
    "forward",
    "model_in_path",
]

COLD_START_HEADER: Final = "x-kinfer-cold-start"
"""On a response: the seconds the request was held while its model had no Ready pod."""
COLD_START_MARKER_HEADER: Final = "x-kinfer-cold-start"
"""On a request the activator held, sent to the runtime's classified port: the runtime counts it
apart from the series canary analysis reads (it honours the marker on that port only)."""
QUEUE_DEPTH_HEADER: Final = "x-kinfer-queue-depth"
"""On a runtime's answer: the inference requests still in flight there, this one excluded."""
MARKER_HEADERS: Final = frozenset({"x-kinfer-pinned", "x-kinfer-shadow", COLD_START_MARKER_HEADER})
"""Markers the runtime honours on its classified port: a client's own are dropped there."""

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",  # recomputed by the side that writes the body
    }
)
_MODEL_PATH: Final = re.compile(r"/v2/models/([^/]+)")


def model_in_path(path: str) -> str | None:
    """The model an Open Inference Protocol path names, if any."""
    match = _MODEL_PATH.match(path)
    return match[1] if match else None


def error(status: int, message: str, retry_after_s: int | None = None) -> web.Response:
    """An Open Inference Protocol error body (`{"error": ...}`)."""
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return web.json_response({"error": message}, status=status, headers=headers)


def _request_headers(request: web.Request, cold: bool) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in request.headers.items():
        lower = key.lower()
        if lower in HOP_BY_HOP or (cold and lower in MARKER_HEADERS):
            continue
        headers.add(key, value)
    if cold:
        headers[COLD_START_MARKER_HEADER] = "true"
    return headers


async def forward(
    session: aiohttp.ClientSession, request: web.Request, pod: Pod, cold: bool
) -> tuple[web.Response, int | None]:
    """The runtime's answer to `request` and the queue depth it reported. A request that waited
    for a cold start goes to the pod's classified port with the cold-start marker."""
    port = pod.classified_port if cold and pod.classified_port else pod.http_port
    url = f"http://{pod.address}:{port}{request.rel_url}"
    body = await request.read() if request.body_exists else None
    headers = _request_headers(request, cold and port != pod.http_port)
    async with session.request(
        request.method, url, headers=headers, data=body, allow_redirects=False
    ) as upstream:
        content = await upstream.read()
        out: CIMultiDict[str] = CIMultiDict()
        for key, value in upstream.headers.items():
            if key.lower() not in HOP_BY_HOP:
                out.add(key, value)
        depth = upstream.headers.get(QUEUE_DEPTH_HEADER)
    response = web.Response(status=upstream.status, reason=upstream.reason, body=content)
    response.headers.clear()
    response.headers.extend(out)
    return response, int(depth) if depth and depth.isdigit() else None
