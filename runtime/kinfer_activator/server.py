"""The activator process: one HTTP listener per model port, opened and closed as the routing
table changes, plus a metrics and health listener; drains on SIGTERM.

aiohttp (server and client) rather than the runtime's uvicorn: listeners must be added and
removed at runtime (an AppRunner per port does that), and the same library gives a pooled
keep-alive client for the upstream side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kinfer_activator.endpoints import EndpointSource
from kinfer_activator.grpc_proxy import GrpcFront
from kinfer_activator.metrics import ActivatorMetrics
from kinfer_activator.pool import HoldTimeout, ModelPool, QueueFull
from kinfer_activator.proxy import COLD_START_HEADER, error, forward, model_in_path
from kinfer_activator.table import Route, RoutesTable
from kinfer_activator.waker import Waker

__all__ = ["Activator", "ActivatorSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActivatorSettings:
    host: str = "0.0.0.0"
    metrics_port: int = 9090
    drain_delay_s: float = 5.0
    """After SIGTERM, keep accepting this long while endpoints drop the pod (as the runtime)."""
    max_body_bytes: int = 64 * 1024 * 1024
    retry_after_s: int = 5
    """Retry-After on a 503 for a full queue or a hold past maxHoldSeconds."""


class Activator:
    def __init__(
        self, endpoints: EndpointSource, waker: Waker, settings: ActivatorSettings | None = None
    ) -> None:
        self.settings = settings or ActivatorSettings()
        self.metrics = ActivatorMetrics()
        self._endpoints = endpoints
        self._waker = waker
        self._pools: dict[int, ModelPool] = {}
        self._runners: dict[int, web.AppRunner] = {}
        self._metrics_runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._table: RoutesTable | None = None
        self.draining = False
        self._grpc = GrpcFront(self.pool, self.metrics, self.settings.host)
        self._grpc_ports: dict[int, int] = {}  # http port -> the gRPC port opened for it
        endpoints.subscribe(self._endpoints_changed)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry one client's cookies to another
            timeout=aiohttp.ClientTimeout(total=None),
        )
        app = web.Application()
        app.router.add_get("/metrics", self._metrics_page)
        app.router.add_get("/healthz", self._live)
        app.router.add_get("/readyz", self._ready)
        self._metrics_runner = web.AppRunner(app, access_log=None)
        await self._metrics_runner.setup()
        site = web.TCPSite(self._metrics_runner, self.settings.host, self.settings.metrics_port)
        await site.start()

    @property
    def metrics_port(self) -> int:
        assert self._metrics_runner is not None
        return self._metrics_runner.addresses[0][1]  # type: ignore[no-any-return]

    async def apply(self, table: RoutesTable) -> None:
        """Serve exactly the table's ports: open new listeners, close dropped ones."""
        wanted = table.by_port()
        for port in set(self._runners) - set(wanted):
            runner = self._runners.pop(port)
            self._pools.pop(port, None)
            for site in list(runner.sites):
                await site.stop()  # stop accepting; requests on open connections finish
            asyncio.get_running_loop().create_task(runner.cleanup())
        for port, route in wanted.items():
            pool = self._pools.get(port)
            if pool is not None and pool.route.key == route.key:
                pool.route = route
                pool.dispatch()
            else:
                self._pools[port] = ModelPool(route, self._endpoints, self._waker, self.metrics)
            if port not in self._runners:
                try:
                    self._runners[port] = await self._listen(port)
                except OSError as exc:
                    log.error("cannot listen on %d for %s/%s: %s", port, *route.key, exc)
                    self._pools.pop(port)
        await self._apply_grpc(wanted)
        self._table = table

    async def _apply_grpc(self, wanted: dict[int, Route]) -> None:
        for http_port, grpc_port in list(self._grpc_ports.items()):
            route = wanted.get(http_port)
            if route is None or route.grpc_port != grpc_port or http_port not in self._pools:
                del self._grpc_ports[http_port]
                await self._grpc.close(grpc_port, 0)
        for http_port, route in wanted.items():
            if route.grpc_port and http_port not in self._grpc_ports and http_port in self._pools:
                try:
                    await self._grpc.open(route.grpc_port, http_port)
                except (OSError, RuntimeError) as exc:
                    log.error(
                        "cannot serve gRPC on %d for %s/%s: %s", route.grpc_port, *route.key, exc
                    )
                    continue
                self._grpc_ports[http_port] = route.grpc_port

    async def _listen(self, port: int) -> web.AppRunner:
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", partial(self._handle, port))
        # handler_cancellation: a client that leaves while held frees its place in the queue.
        runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=self._longest_hold(),
            handle_signals=False,
            handler_cancellation=True,
        )
        await runner.setup()
        await web.TCPSite(runner, self.settings.host, port).start()
        return runner

    def _longest_hold(self) -> float:
        holds = [p.route.max_hold_seconds for p in self._pools.values()]
        return max(holds, default=600.0) + 30.0

    def pool(self, port: int) -> ModelPool | None:
        """The model served on `port` now, if any."""
        return self._pools.get(port)

    def tick(self) -> None:
        for pool in self._pools.values():
            pool.tick()

    async def drain(self) -> None:
        """SIGTERM: report not ready, wait for endpoints to drop this pod, stop accepting, let
        held requests keep waiting (up to their limit) and in-flight ones finish."""
        self.draining = True
        await asyncio.sleep(self.settings.drain_delay_s)
        for runner in self._runners.values():
            runner._shutdown_timeout = self._longest_hold()
        await asyncio.gather(
            self._grpc.drain(self._longest_hold()),
            *(runner.cleanup() for runner in self._runners.values()),
        )
        self._runners.clear()
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()

    async def run(self, poll: Callable[[], RoutesTable | None], stop: asyncio.Event) -> None:
        """Poll the table (a cheap in-memory compare) four times a second until `stop`, then
        drain."""
        while not stop.is_set():
            table = poll()
            if table is not None:
                await self.apply(table)
            self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
        await self.drain()

    def _endpoints_changed(self) -> None:
        for pool in self._pools.values():
            pool.dispatch()

    # --- requests -----------------------------------------------------------------------

    async def _handle(self, port: int, request: web.Request) -> web.StreamResponse:
        pool = self._pools.get(port)
        if pool is None:
            return error(404, f"no model is served on port {port}")
        route = pool.route
        named = model_in_path(request.path)
        if named is not None and named != route.model:
            return error(404, f"unknown model '{named}': this address serves '{route.model}'")
        try:
            lease = await pool.acquire()
        except QueueFull:
            return error(
                503, "too many requests held for a cold start", self.settings.retry_after_s
            )
        except HoldTimeout:
            return error(
                503,
                f"no replica of '{route.model}' became ready in {route.max_hold_seconds:g} s",
                self.settings.retry_after_s,
            )
        depth: int | None = None
        labels = route.key
        assert self._session is not None
        try:
            response, depth = await forward(
                self._session, request, lease.pod, lease.waited_s is not None
            )
        except aiohttp.ClientError as exc:
            self.metrics.forwarded.labels(*labels, "502").inc()
            return error(502, f"replica of '{route.model}' unreachable: {type(exc).__name__}")
        finally:
            pool.release(lease, depth)
        self.metrics.forwarded.labels(*labels, str(response.status)).inc()
        if lease.waited_s is not None:
            response.headers[COLD_START_HEADER] = f"{lease.waited_s:.3f}"
        return response

    # --- metrics and health -------------------------------------------------------------

    async def _metrics_page(self, _: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _live(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _ready(self, _: web.Request) -> web.Response:
        if self.draining or self._table is None:
            return web.Response(status=503, text="draining" if self.draining else "no table")
        return web.Response(text="ok")
