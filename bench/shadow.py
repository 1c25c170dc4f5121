"""What shadow mirroring costs the stable runtime: throughput and latency with mirroring off,
at 20% and at 100%, against a second runtime as the candidate. Prints a markdown table.

Not a test: nothing fails when numbers move. Both runtimes, the load generator and the model
share this machine's CPUs, so the mirror's sends and the candidate's inferences compete with
the stable path for them; on a real cluster the candidate runs on its own nodes. Each mode is
measured in turn within each round (`--rounds`, median reported), so background load hits
every mode alike; ratios are to "off" from the same rounds.

    .venv/bin/python bench/shadow.py [--concurrency 8] [--requests 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from kinfer_runtime.demo import build_demo_model

from runtime import (  # bench/runtime.py: the same servers, load generator and machine line
    free_port,
    kinfer_command,
    machine,
    run_load,
    running,
)

MODES = {"off": 0, "20%": 20, "100%": 100}


def _counter(base_url: str, result: str) -> float:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = rf'^kinfer_shadow_requests_total\{{[^}}]*result="{result}"[^}}]*\}} ([0-9.e+]+)$'
    return sum(float(m) for m in re.findall(pattern, text, re.M))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--time-limit-s", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="kinfer-bench-shadow-"))
    (model,) = build_demo_model(work / "demo", "normal", with_torch=False)
    config = work / "mirror.json"
    config.write_text("{}")
    image = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ports = [free_port() for _ in range(4)]
    stable_cmd = kinfer_command(model, ports[0], ports[1], 32, 0, "cpu")
    stable_cmd += ["--shadow-config", str(config), "--revision", "stable"]
    candidate_cmd = [*kinfer_command(model, ports[2], ports[3], 32, 0, "cpu"), "--revision", "cand"]
    stable_url = f"http://127.0.0.1:{ports[0]}"
    results: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in MODES}
    mirrored: dict[str, list[float]] = {mode: [] for mode in MODES}
    dropped: dict[str, list[float]] = {mode: [] for mode in MODES}
    with (
        running(candidate_cmd, ports[2], ports[3], work / "candidate.log"),
        running(stable_cmd, ports[0], ports[1], work / "stable.log") as stable,
    ):
        from kinfer_runtime.backends import BackendOptions
        from kinfer_runtime.backends.onnx import OnnxBackend

        backend = OnnxBackend(model, BackendOptions(device="cpu"))
        backend.load()
        reference = backend.infer({"input": image})["logits"]
        for _ in range(args.rounds):
            for mode, percent in MODES.items():
                target = {"target": f"http://127.0.0.1:{ports[2]}", "percent": percent}
                tmp = config.with_suffix(".tmp")
                tmp.write_text(json.dumps(target if percent else {}))
                tmp.replace(config)
                time.sleep(2.5)  # the runtime polls the file every 2 s
                before = _counter(stable_url, "mirrored"), _counter(stable_url, "dropped")
                results[mode].append(
                    run_load(
                        stable,
                        "binary",
                        image,
                        args.concurrency,
                        args.requests,
                        args.time_limit_s,
                        reference,
                    )
                )
                time.sleep(1)  # let the queue drain into the counters
                mirrored[mode].append(_counter(stable_url, "mirrored") - before[0])
                dropped[mode].append(_counter(stable_url, "dropped") - before[1])

    base = [statistics.median(r[i] for r in results["off"]) for i in range(3)]
    print(f"Stable runtime with shadow mirroring, c={args.concurrency}, binary payload")
    print()
    print(
        "| mirroring | req/s | p50 ms | p99 ms | req/s vs off | p99 vs off | mirrored | dropped |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode in MODES:
        rps, p50, p99 = (statistics.median(r[i] for r in results[mode]) for i in range(3))
        print(
            f"| {mode} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {rps / base[0]:.2f} | "
            f"{p99 / base[2]:.2f} | {statistics.median(mirrored[mode]):.0f} | "
            f"{statistics.median(dropped[mode]):.0f} |"
        )
    print()
    print(f"Machine: {machine('cpu')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
