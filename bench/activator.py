"""Activator benchmark: the cost of the activator in the path of a warm model.

Not a test. One kinfer-runtime (the demo model, dynamic batching) and one kinfer-activator in
front of it (least-queue routing, so it stays in the path while warm), both on 127.0.0.1. The
same closed-loop load generator (bench/runtime.py's, binary tensor payload, one demo image per
request) drives the runtime directly and through the activator, alternating in every round;
the median round is reported. Also the activator's own CPU and RSS, read from /proc while it
forwards the c=32 load, scaled to 1000 req/s. Prints a markdown table with the goals of #24:
p50 added <= 1 ms at c=1, throughput >= 0.8 of direct at c=32.

    .venv/bin/python bench/activator.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from kinfer_runtime.backends._cpu import available_cpus
from kinfer_runtime.demo import build_demo_model

from runtime import (  # bench/runtime.py: the same servers, load generator and machine line
    Endpoint,
    _median_run,
    free_port,
    kinfer_command,
    machine,
    run_load,
    running,
)

TICKS = os.sysconf("SC_CLK_TCK")
DIRECT = "direct (runtime)"
VIA = "through the activator"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _activator_command(routes: Path, endpoints: Path, metrics_port: int) -> list[str]:
    return [
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
        str(metrics_port),
        "--drain-delay",
        "0",
        "--log-level",
        "WARNING",
    ]


def _write_table(routes: Path, endpoints: Path, port: int, runtime_port: int) -> None:
    route = {
        "namespace": "bench",
        "model": "demo",
        "httpPort": port,
        "stable": {"revision": "r1", "service": "demo-stable", "deployment": "demo-r1"},
        "leastQueue": True,
        "targetConcurrency": 32,
    }
    routes.write_text(json.dumps({"version": 1, "routes": {str(port): route}}))
    endpoints.write_text(json.dumps({"bench/demo-stable": [f"127.0.0.1:{runtime_port}"]}))


def demo_bench(
    doc: str | None, name: str, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, Path, Path, np.ndarray]:
    """What the demo-model benches share: their options (rounds, requests, time limit,
    device), a work directory, the demo ONNX model in it, and the one image every request
    carries."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved; median reported")
    parser.add_argument("--requests", type=int, default=3000, help="per measurement (upper bound)")
    parser.add_argument("--time-limit-s", type=float, default=10.0, help="per measurement")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix=f"kinfer-bench-{name}-"))
    build_demo_model(work, with_torch=False)
    image = np.random.default_rng(11).standard_normal((1, 3, 32, 32)).astype(np.float32)
    return args, work, work / "model.onnx", image


def main(argv: Sequence[str] | None = None) -> int:
    args, work, model, image = demo_bench(__doc__, "activator", argv)
    runtime_port, runtime_grpc = free_port(), free_port()
    port, metrics_port = free_port(), free_port()
    routes, endpoints = work / "routes.json", work / "endpoints.json"
    _write_table(routes, endpoints, port, runtime_port)

    delay_us = 1000 if args.device == "cuda" else 0
    runs: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    cpu_per_krps: list[float] = []
    rss: list[float] = []
    with running(
        # As bench/runtime.py: no queue delay on the CPU, 1 ms on CUDA.
        kinfer_command(model, runtime_port, runtime_grpc, 32, delay_us, args.device),
        runtime_port,
        runtime_grpc,
        work / "runtime.log",
    ) as direct:
        # The reference answer: the runtime's own, checked on every measured run.
        import urllib.request

        from runtime import binary_request, parse_logits

        body, headers = binary_request(image)
        request = urllib.request.Request(direct.url, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as answer:
            reference = parse_logits(
                answer.read(), answer.headers.get("Inference-Header-Content-Length")
            )
        log = (work / "activator.log").open("wb")
        activator = subprocess.Popen(
            _activator_command(routes, endpoints, metrics_port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            via = Endpoint(f"http://127.0.0.1:{port}/v2/models/demo/infer", "")
            _wait_through(via.url, body, headers)
            for round_ in range(args.rounds):
                print(f"round {round_ + 1}/{args.rounds} ...", file=sys.stderr)
                for c in (1, 32):
                    for label, endpoint in ((DIRECT, direct), (VIA, via)):
                        before = _cpu_seconds(activator.pid)
                        started = time.perf_counter()
                        measured = run_load(
                            endpoint,
                            "binary",
                            image,
                            c,
                            args.requests,
                            args.time_limit_s,
                            reference,
                        )
                        elapsed = time.perf_counter() - started
                        runs.setdefault((c, label), []).append(measured)
                        if label == VIA and c == 32:
                            cores = (_cpu_seconds(activator.pid) - before) / elapsed
                            cpu_per_krps.append(cores / (measured[0] / 1000))
                            rss.append(_rss_mib(activator.pid))
        finally:
            activator.terminate()
            activator.wait(60)
            log.close()

    print(_table(runs, cpu_per_krps, rss, args))
    return 0


def _wait_through(url: str, body: bytes, headers: dict[str, str]) -> None:

    deadline = time.monotonic() + 60
    while True:
        try:
            request = urllib.request.Request(url, data=body, headers=headers)
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _table(
    runs: dict[tuple[int, str], list[tuple[float, float, float]]],
    cpu_per_krps: list[float],
    rss: list[float],
    args: argparse.Namespace,
) -> str:
    d1, v1 = _median_run(runs[1, DIRECT]), _median_run(runs[1, VIA])
    d32, v32 = _median_run(runs[32, DIRECT]), _median_run(runs[32, VIA])
    added = v1[1] - d1[1]
    ratio = v32[0] / d32[0]
    cpu = sorted(cpu_per_krps)[len(cpu_per_krps) // 2]
    lines = [
        "### kinfer activator in the path (warm, least-queue), binary payload, demo model",
        "",
        "| measure | direct | through the activator | result | goal |",
        "|---|---|---|---|---|",
        f"| p50 at c=1 | {d1[1]:.2f} ms | {v1[1]:.2f} ms | {added:+.2f} ms "
        f"| {'met' if added <= 1.0 else 'MISSED'} (<= +1 ms) |",
        f"| p99 at c=1 | {d1[2]:.2f} ms | {v1[2]:.2f} ms | {v1[2] - d1[2]:+.2f} ms | — |",
        f"| throughput at c=32 | {d32[0]:.0f} req/s | {v32[0]:.0f} req/s | x{ratio:.2f} "
        f"| {'met' if ratio >= 0.8 else 'MISSED'} (>= x0.8) |",
        f"| p50 at c=32 | {d32[1]:.2f} ms | {v32[1]:.2f} ms | {v32[1] - d32[1]:+.2f} ms | — |",
        f"| activator CPU per 1000 req/s | — | {cpu:.2f} cores | — | — |",
        f"| activator RSS | — | {max(rss):.0f} MiB | — | — |",
        "",
        f"Machine: {machine(args.device)}. {available_cpus()} CPUs shared by the load generator, "
        f"the runtime and the activator. Median of {args.rounds} interleaved rounds; up to "
        f"{args.requests} requests or {args.time_limit_s:g} s per measurement.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
