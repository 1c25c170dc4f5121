"""`kinfer-activator` as a process: SIGTERM drains the requests it holds before it exits."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
from support.activator import NAMESPACE, Runtime, free_port, make_route, table


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait(condition: object, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigterm_drains_held_requests_then_exits(
    tmp_path: Path, runtimes: list[Runtime], infer_body: tuple[bytes, dict[str, str]]
) -> None:
    port, metrics = free_port(), free_port()
    routes, endpoints = tmp_path / "routes.json", tmp_path / "endpoints.json"
    route = make_route(port, at_zero=True)
    routes.write_text(table(route).model_dump_json(by_alias=True))
    endpoints.write_text("{}")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kinfer_activator",
            "--routes",
            str(routes),
            "--endpoints-file",
            str(endpoints),
            "--host",
            "127.0.0.1",
            "--metrics-port",
            str(metrics),
            "--drain-delay",
            "0",
        ]
    )
    url = f"http://127.0.0.1:{port}/v2/models/demo/infer"

    async def clients() -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def one() -> int:
                async with session.post(url, data=infer_body[0], headers=infer_body[1]) as r:
                    await r.read()
                    return r.status

            tasks = [asyncio.ensure_future(one()) for _ in range(5)]
            await asyncio.to_thread(
                _wait, lambda: _metric(metrics, "kinfer_activator_held_requests") == 5, "holds"
            )
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)  # draining now: the held requests keep waiting
            assert process.poll() is None
            pods = [f"127.0.0.1:{runtimes[0].pod.http_port}:{runtimes[0].pod.classified_port}"]
            endpoints.write_text(json.dumps({f"{NAMESPACE}/demo-stable": pods}))
            return list(await asyncio.gather(*tasks))

    try:
        _wait(lambda: _ready(metrics), "the activator to listen")
        assert asyncio.run(clients()) == [200] * 5
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
