"""Least-queue benchmark: the activator's least-queue routing against kube-proxy's random choice.

Not a test. Three kinfer-runtime replicas (the demo model, dynamic batching) on 127.0.0.1, one
of them at half speed (the test-only KINFER_TEST_SLOWDOWN=2: each batch is followed by a sleep
as long as the batch took). The same closed-loop load (binary tensor payload, one demo image
per request, the same concurrency, a new connection per request) reaches them two ways,
alternating in every round; the median round is reported:

1. "kube-proxy (random)": each request goes to a replica picked uniformly at random. This is
   the model of what kube-proxy does for a Service (its iptables/nftables rules pick a backend
   at random per new connection), done in the load generator and measured locally because the
   bench runs without a cluster.
2. "least-queue (activator)": every request goes to one kinfer-activator (file mode, as in
   bench/activator.py) whose route has `leastQueue: true` and lists the three replicas in its
   stable track; it sends each request to the replica with the least in flight.

Every answer sampled from each replica (and from the activator) is checked against the
runtime's own reference answer. Prints a markdown table with the goal of #24: p99 at least 30%
lower with least-queue.

    .venv/bin/python bench/least_queue.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import aiohttp
import numpy as np
from activator import _activator_command, _wait_through, demo_bench  # bench/activator.py
from kinfer_runtime.backends._cpu import available_cpus

from runtime import (  # bench/runtime.py: the same servers, payload and machine line
    HEADER,
    Endpoint,
    _median_run,
    binary_request,
    closed_loop,
    free_port,
    kinfer_command,
    machine,
    parse_logits,
    percentile,
    running,
)

REPLICAS = 3
SLOWDOWN = 2.0  # the slow replica runs at half speed
RANDOM = "kube-proxy (random)"
LEAST = "least-queue (activator)"
CONCURRENCIES = (8, 32)


async def _spread_load(
    urls: Sequence[str],
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    requests: int,
    time_limit_s: float,
    seed: int,
) -> tuple[float, list[float], dict[str, tuple[bytes, str | None]]]:
    """bench/runtime.py's closed loop, except that each request opens a new connection to a URL
    picked uniformly at random from `urls` (one URL: always that one). Returns the elapsed
    time, the latencies and the last answer from each URL."""
    pick = random.Random(seed).choice
    samples: dict[str, tuple[bytes, str | None]] = {}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            url = pick(urls)
            async with session.post(url, data=body, headers=headers) as response:
                content = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {content[:200]!r}")
                samples[url] = content, response.headers.get(HEADER)

        elapsed, latencies, _ = await closed_loop(one, concurrency, requests, time_limit_s)
    return elapsed, latencies, samples


def measure(
    urls: Sequence[str],
    image: np.ndarray,
    concurrency: int,
    requests: int,
    time_limit_s: float,
    reference: np.ndarray,
    seed: int,
) -> tuple[float, float, float]:
    """(throughput, p50 ms, p99 ms) of one closed-loop run; every URL's answer checked."""
    body, headers = binary_request(image)
    elapsed, latencies, samples = asyncio.run(
        _spread_load(urls, body, headers, concurrency, requests, time_limit_s, seed)
    )
    for url, (content, header_length) in samples.items():
        if not np.allclose(parse_logits(content, header_length), reference, atol=1e-4):
            raise RuntimeError(f"{url} returned logits that differ from the reference")
    latencies.sort()
    return (
        len(latencies) / elapsed,
        percentile(latencies, 0.50) * 1e3,
        percentile(latencies, 0.99) * 1e3,
    )


def _write_table(routes: Path, endpoints: Path, port: int, replicas: Sequence[int]) -> None:
    route = {
        "namespace": "bench",
        "model": "demo",
        "httpPort": port,
        "stable": {"revision": "r1", "service": "demo-stable", "deployment": "demo-r1"},
        "leastQueue": True,
        "targetConcurrency": 32,
    }
    routes.write_text(json.dumps({"version": 1, "routes": {str(port): route}}))
    addresses = [f"127.0.0.1:{p}" for p in replicas]
    endpoints.write_text(json.dumps({"bench/demo-stable": addresses}))


@contextlib.contextmanager
def _replicas(work: Path, model: Path, device: str) -> Iterator[list[tuple[int, Endpoint]]]:
    """Three runtimes (port, endpoint); the last at 1/SLOWDOWN speed (the variable reaches only
    that process)."""
    delay_us = 1000 if device == "cuda" else 0  # as bench/runtime.py
    with contextlib.ExitStack() as stack:
        endpoints = []
        for index in range(REPLICAS):
            port, grpc_port = free_port(), free_port()
            command = kinfer_command(model, port, grpc_port, 32, delay_us, device)
            if index == REPLICAS - 1:
                command = ["env", f"KINFER_TEST_SLOWDOWN={SLOWDOWN:g}", *command]
            log = work / f"runtime-{index}.log"
            endpoint = stack.enter_context(running(command, port, grpc_port, log))
            endpoints.append((port, endpoint))
        yield endpoints


def main(argv: Sequence[str] | None = None) -> int:
    args, work, model, image = demo_bench(__doc__, "least-queue", argv)
    port, metrics_port = free_port(), free_port()
    routes, endpoints_file = work / "routes.json", work / "endpoints.json"

    runs: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    with _replicas(work, model, args.device) as replicas:
        _write_table(routes, endpoints_file, port, [p for p, _ in replicas])
        body, headers = binary_request(image)
        # The reference answer: a full-speed runtime's own, checked on every measured run.
        request = urllib.request.Request(replicas[0][1].url, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as answer:
            reference = parse_logits(answer.read(), answer.headers.get(HEADER))
        log = (work / "activator.log").open("wb")
        activator = subprocess.Popen(
            _activator_command(routes, endpoints_file, metrics_port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            via = f"http://127.0.0.1:{port}/v2/models/demo/infer"
            _wait_through(via, body, headers)
            ways = ((RANDOM, [e.url for _, e in replicas]), (LEAST, [via]))
            for round_ in range(args.rounds):
                print(f"round {round_ + 1}/{args.rounds} ...", file=sys.stderr)
                for c in CONCURRENCIES:
                    for label, urls in ways:
                        measured = measure(
                            urls,
                            image,
                            c,
                            args.requests,
                            args.time_limit_s,
                            reference,
                            seed=round_ * 1000 + c,
                        )
                        runs.setdefault((c, label), []).append(measured)
        finally:
            activator.terminate()
            activator.wait(60)
            log.close()

    print(_table(runs, args))
    return 0


def _table(
    runs: dict[tuple[int, str], list[tuple[float, float, float]]], args: argparse.Namespace
) -> str:
    lines = [
        f"### least-queue (activator) against kube-proxy (random), {REPLICAS} replicas, one at "
        f"1/{SLOWDOWN:g} speed, binary payload, demo model",
        "",
        "| concurrency | way | p50 | p99 | throughput | p99 ratio (least-queue / random) "
        "| throughput ratio | goal: p99 at least 30% lower |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in CONCURRENCIES:
        rand, least = _median_run(runs[c, RANDOM]), _median_run(runs[c, LEAST])
        p99_ratio, throughput_ratio = least[2] / rand[2], least[0] / rand[0]
        goal = "met" if p99_ratio <= 0.7 else "MISSED"
        lines += [
            f"| c={c} | {RANDOM} | {rand[1]:.2f} ms | {rand[2]:.2f} ms | {rand[0]:.0f} req/s "
            "| — | — | — |",
            f"| c={c} | {LEAST} | {least[1]:.2f} ms | {least[2]:.2f} ms | {least[0]:.0f} req/s "
            f"| x{p99_ratio:.2f} | x{throughput_ratio:.2f} | {goal} (<= x0.70) |",
        ]
    lines += [
        "",
        f"Machine: {machine(args.device)}. {available_cpus()} CPUs shared by the load generator, "
        f"the {REPLICAS} runtimes and the activator. A new connection per request both ways. "
        f"Median of {args.rounds} interleaved rounds; up to {args.requests} requests or "
        f"{args.time_limit_s:g} s per measurement.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
