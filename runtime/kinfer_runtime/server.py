"""Runs the app under uvicorn (uvloop, httptools) with a Kubernetes-friendly shutdown.

Each response leaves in one write (`_http.OneWriteHttpToolsProtocol`), not uvicorn's two.

One server, two listeners for the same app: the public port, and the classified port that only
kinfer's mirror and pinned route reach (see routes.inference.traffic_class). The sockets are
bound here, before uvicorn starts, so a port in use is reported by number.

SIGTERM: readiness turns false at once; the server keeps serving for `drain_delay_s` so the
endpoint is removed from Services before the listener closes; then uvicorn stops accepting,
waits for every in-flight request (queued ones included) and the process exits 0.
A model that cannot be loaded ends the process with exit code 1 and a one-line reason.
"""

import logging
import signal
import socket
import time
from types import FrameType

import uvicorn
from prometheus_client import disable_created_metrics, start_http_server

from kinfer_runtime._http import OneWriteHttpToolsProtocol
from kinfer_runtime.app import create_app
from kinfer_runtime.config import Settings
from kinfer_runtime.service import InferenceService
from kinfer_runtime.termination import report_fatal

__all__ = ["serve"]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: InferenceService, drain_delay_s: float):
        super().__init__(config)
        self._service = service
        self._drain_delay_s = drain_delay_s
        self._stop_at: float | None = None
        self.exit_code = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn's own handler this does not re-raise the signal after shutdown: a
        # drained stop is a clean exit, status 0.
        if self.should_exit:
            self.force_exit = True  # a second signal during shutdown: stop waiting
            return
        if self._stop_at is not None:
            self.should_exit = True  # a second signal during the drain delay: close now
            return
        was_serving = self._service.readiness.begin_drain()
        if sig == signal.SIGTERM and was_serving and self._drain_delay_s > 0:
            log.info("SIGTERM: not ready; serving on for %.1fs, then closing", self._drain_delay_s)
            self._stop_at = time.monotonic() + self._drain_delay_s
        else:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            self.should_exit = True
        return await super().on_tick(counter)

    def fail(self, message: str, settings: Settings) -> None:
        report_fatal(message, settings.termination_log)
        self.exit_code = 1
        self.should_exit = True


def serve(settings: Settings) -> int:
    """Serves until SIGTERM/SIGINT (exit 0) or a model load failure (exit 1)."""
    server: _Server | None = None

    def on_fatal(message: str) -> None:
        assert server is not None
        server.fail(message, settings)

    # The *_created series would double the scrape size, and nothing queries them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    listeners: list[socket.socket] = []
    for port in (settings.port, settings.classified_port):
        if not port:
            continue
        try:
            listeners.append(_listen(settings.host, port))
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", settings.host, port, exc)
            for sock in listeners:
                sock.close()
            report_fatal(f"cannot listen on {settings.host}:{port}", settings.termination_log)
            return 1
    if settings.classified_port:
        log.info("shadow and pinned markers count on port %d only", settings.classified_port)
    service = InferenceService(settings, on_fatal=on_fatal)
    config = uvicorn.Config(
        create_app(service),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=OneWriteHttpToolsProtocol,
        ws="none",  # no WebSocket routes; upgrades would bypass the corked transport
        lifespan="on",
        log_config=None,  # the CLI configured logging for everything
        access_log=settings.access_log,
        server_header=False,
    )
    server = _Server(config, service, settings.drain_delay_s)
    metrics_server = None
    if settings.metrics_port and settings.metrics_port != settings.port:
        try:
            metrics_server, _ = start_http_server(
                settings.metrics_port, addr=settings.host, registry=service.metrics.registry
            )
        except OSError as exc:
            message = f"cannot listen on metrics port {settings.metrics_port}: {exc}"
            report_fatal(message, settings.termination_log)
            for sock in listeners:
                sock.close()
            return 1
    try:
        server.run(sockets=listeners)
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        for sock in listeners:
            sock.close()
    return server.exit_code


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket, as uvicorn would bind it (address reuse on)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)
