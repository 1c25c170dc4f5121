"""Helpers of the activator tests: real runtime processes on loopback (the demo model) and an
activator running on an event loop in a thread of its own, fed endpoints by hand and waking
through a recording fake."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kinfer_activator.endpoints import Pod, StaticEndpoints
from kinfer_activator.server import Activator, ActivatorSettings
from kinfer_activator.table import Route, RoutesTable, Track, WakeReplicas

T = TypeVar("T")
NAMESPACE = "team-a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- runtimes ----------------------------------------------------------------------------


@dataclass
class Runtime:
    pod: Pod
    process: subprocess.Popen[bytes]
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.pod.http_port}"

    def requests(self, source: str = "live") -> float:
        """kinfer_requests_total of this runtime, summed over codes, for one source."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("kinfer_requests_total{") and f'source="{source}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"runtime exited with {process.returncode}")
        ready = f"http://127.0.0.1:{port}/v2/health/ready"
        with contextlib.suppress(OSError), urllib.request.urlopen(ready, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError("runtime not ready in time")


@contextlib.contextmanager
def spawn_runtime(model: Path, **flags: str) -> Iterator[Runtime]:
    port, classified, metrics, grpc = free_port(), free_port(), free_port(), free_port()
    args = {
        "model-uri": str(model),
        "model-name": "demo",
        "host": "127.0.0.1",
        "port": str(port),
        "classified-port": str(classified),
        "grpc-port": str(grpc),
        "metrics-port": str(metrics),
        "drain-delay-s": "0",
        "log-level": "warning",
        **flags,
    }
    command = [sys.executable, "-m", "kinfer_runtime", "serve"]
    for key, value in args.items():
        command += [f"--{key}", value]
    process = subprocess.Popen(command)
    try:
        _wait_ready(port, process)
        yield Runtime(Pod("127.0.0.1", port, classified, grpc), process, metrics)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the activator -----------------------------------------------------------------------


@dataclass
class FakeWaker:
    """Records every ask; `on_wake` (run on the activator's loop) can bring pods up."""

    asks: list[tuple[str, str, int]] = field(default_factory=list)
    on_wake: Callable[[int], None] | None = None

    async def wake(self, namespace: str, deployment: str, replicas: int) -> None:
        self.asks.append((namespace, deployment, replicas))
        if self.on_wake is not None:
            self.on_wake(replicas)


def make_route(port: int, model: str = "demo", **fields: Any) -> Route:
    base: dict[str, Any] = {
        "namespace": NAMESPACE,
        "model": model,
        "http_port": port,
        "stable": Track(revision="r1", service=f"{model}-stable", deployment=f"{model}-r1"),
        "target_concurrency": 4,
        "max_held_requests": 1000,
        "max_hold_seconds": 60,
        "wake_replicas": WakeReplicas(max=10),
    }
    return Route(**(base | fields))


def table(*routes: Route) -> RoutesTable:
    return RoutesTable(version=1, routes={str(r.http_port): r for r in routes})


class ActivatorThread:
    """An Activator on its own event loop in a daemon thread; `call` runs code on that loop."""

    def __init__(self, settings: ActivatorSettings) -> None:
        self.loop = asyncio.new_event_loop()
        self.endpoints = StaticEndpoints()
        self.waker = FakeWaker()
        self.activator = Activator(self.endpoints, self.waker, settings)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self.activator.start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def soon(self, fn: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def apply(self, *routes: Route) -> None:
        self.call(self.activator.apply(table(*routes)))

    def set_pods(self, service: str, pods: list[Pod]) -> None:
        self.soon(lambda: self.endpoints.set(NAMESPACE, service, pods))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.activator.drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
