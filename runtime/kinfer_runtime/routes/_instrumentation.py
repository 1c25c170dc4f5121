"""Counts and times inference requests, whatever status they end with.

A plain ASGI middleware rather than code in the route: the status is only final after the
error handler has turned an exception into a response.
"""

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kinfer_runtime.metrics import RuntimeMetrics

__all__ = ["InferenceMetricsMiddleware"]


class InferenceMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: RuntimeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/infer"):
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before responding

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            self.metrics.inflight.dec()
            self.metrics.request_done(status, time.perf_counter() - started, "rest")
