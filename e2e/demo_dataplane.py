"""`make demo`'s stand-in data plane: Prometheus, real runtime processes and live traffic.

kwok runs no containers, so the demo borrows the e2e suite's TEST-ONLY stand-in (see
e2e/dataplane.py): one real `kinfer-runtime serve` per revision the operator deploys, a real
Prometheus scraping them, and requests split as the operator's replica counts say. It runs
until interrupted.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from pathlib import Path

from dataplane import DataPlane, Prometheus


class _EveryVersion(dict[str, Path]):
    """Every model version serves the same good demo model."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def __missing__(self, _version: str) -> Path:
        return self.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--prometheus-url-file", type=Path, required=True)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    models = args.workdir / "models"
    exe = Path(sys.executable).with_name("kinfer-runtime")
    subprocess.run(
        [str(exe), "demo-model", "--out", str(models), "--onnx-only"],
        check=True,
        capture_output=True,
    )
    prometheus = Prometheus(args.workdir)
    prometheus.start()
    args.prometheus_url_file.write_text(prometheus.url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with DataPlane(
            args.namespace,
            args.model,
            _EveryVersion(models / "model.onnx"),
            prometheus,
            args.workdir,
            rate=30,
        ):
            stop.wait()
    finally:
        prometheus.stop()


if __name__ == "__main__":
    main()
