"""Priority isolation benchmark: high-priority latency under a low-priority flood. Not a test.

One kinfer-runtime (2 priority levels, default 2) serves the demo model. A separate process
floods it with low-priority requests from `--flood-clients` concurrent clients (binary REST,
no priority given, so level 2), while this process sends `--probes` high-priority requests one
at a time (`parameters.priority = 1`). Three phases, in one run:

1. unloaded: probes alone;
2. flood, probes at priority 1: what the queue per level buys;
3. flood, probes at priority 2: the control, the same flood in one shared queue.

Prints p50/p99 and each phase's p99 as a ratio to the unloaded p99, and the probes' mean
queue wait (the server's `kinfer_queue_wait_seconds` at the probes' level, over the phase):
the part of their latency the batcher's scheduling decides, apart from the CPU contention
that the flood's HTTP handling adds on a small machine. A batch in progress is
never interrupted, so under a flood a probe waits for at most the running batch and then runs
in the next one: on a CPU, where a batch of n rows costs about n times one row, the floor is
that of two full batches, not of one row. Load goes to 127.0.0.1 only and is bounded in time.

    .venv/bin/python bench/priority.py
"""

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import numpy as np
from kinfer_runtime.demo import build_demo_model
from prometheus_client.parser import text_string_to_metric_families

from runtime import (  # bench/runtime.py: the same servers and payloads as `make bench`
    HEADER,
    MODEL_NAME,
    binary_request,
    free_port,
    kinfer_command,
    machine,
    percentile,
    running,
)


def _request(image: np.ndarray, priority: int | None) -> tuple[bytes, dict[str, str]]:
    body, headers = binary_request(image)
    length = int(headers[HEADER])
    doc = json.loads(body[:length])
    if priority is not None:
        doc["parameters"] = {"priority": priority}
    header = json.dumps(doc).encode()
    return header + body[length:], {**headers, HEADER: str(len(header))}


async def _flood(url: str, clients: int, seconds: float) -> None:
    body, headers = _request(np.zeros((1, 3, 32, 32), np.float32), None)
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            while time.perf_counter() < deadline:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()

        await asyncio.gather(*(client() for _ in range(clients)))


async def _probe(url: str, count: int, priority: int) -> list[float]:
    image = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    body, headers = _request(image, priority)
    latencies = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)  # probes are sparse: they never queue behind each other
    return sorted(latencies)


def _queue_wait(metrics_url: str, priority: int) -> tuple[float, float]:
    """(sum of seconds, count) of kinfer_queue_wait_seconds at one priority level, so far."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("priority") != str(priority):
                continue
            if sample.name == "kinfer_queue_wait_seconds_sum":
                total = sample.value
            elif sample.name == "kinfer_queue_wait_seconds_count":
                count = sample.value
    return total, count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood", help=argparse.SUPPRESS)  # internal: run as the flood process
    parser.add_argument("--seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--flood-clients", type=int, default=32)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--max-batch-size", type=int, default=4)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "kinfer" / "bench")
    args = parser.parse_args(argv)
    if args.flood:
        asyncio.run(_flood(args.flood, args.flood_clients, args.seconds))
        return 0

    model = build_demo_model(args.cache / "model", with_torch=False)[0]
    port, grpc_port = free_port(), free_port()
    command = kinfer_command(
        model, port, grpc_port, args.max_batch_size, args.max_queue_delay_us, "cpu"
    )
    command += ["--priority-levels", "2", "--default-priority", "2"]
    rows = []
    with running(command, port, grpc_port, args.cache / "priority-server.log") as endpoint:
        asyncio.run(_probe(endpoint.url, 20, 1))  # warm-up
        phases = [("unloaded", None), ("flood, probes at priority 1", 1)]
        phases.append(("flood, probes at priority 2 (control)", 2))
        metrics_url = endpoint.url.split("/v2/")[0] + "/metrics"
        for name, priority in phases:
            level = priority or 1
            waited_before = _queue_wait(metrics_url, level)
            flood = None
            if priority is not None:
                flood_args = ["--flood-clients", str(args.flood_clients), "--seconds", "120"]
                flood = subprocess.Popen(
                    [sys.executable, __file__, "--flood", endpoint.url, *flood_args]
                )
                time.sleep(2.0)  # saturated before the first probe
            try:
                latencies = asyncio.run(_probe(endpoint.url, args.probes, priority or 1))
            finally:
                if flood is not None:
                    flood.terminate()
                    flood.wait(timeout=30)
            p50, p99 = percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3
            # The flood's own requests wait at level 2 too: the control phase's figure mixes both.
            waited = _queue_wait(metrics_url, level)
            count = waited[1] - waited_before[1]
            wait_ms = (waited[0] - waited_before[0]) / count * 1e3 if count else float("nan")
            rows.append((name, p50, p99, wait_ms))
    unloaded_p99 = rows[0][2]
    print(f"**Machine:** {machine('cpu')}  ")
    print(
        f"**Setup:** kinfer demo model, max batch {args.max_batch_size}, queue delay "
        f"{args.max_queue_delay_us} µs, 2 priority levels; flood of {args.flood_clients} "
        f"clients at level 2 from another process; {args.probes} sequential probes per phase; "
        f"{MODEL_NAME!r} over REST binary.\n"
    )
    print("| phase | p50 ms | p99 ms | p99 / unloaded p99 | mean queue wait at the level, ms |")
    print("|---|---:|---:|---:|---:|")
    for name, p50, p99, wait_ms in rows:
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {p99 / unloaded_p99:.2f} | {wait_ms:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
