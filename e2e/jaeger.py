"""Jaeger v2 all-in-one (`build-binaries.sh jaeger`, from the Go module proxy) as a host
process: OTLP in, in-memory storage, the query API out, every port on one address of ours.

Used by tests/runtime/test_tracing_jaeger.py (loopback), e2e/test_real_tracing.py (the real
node's address, which pods reach) and bench/cache_tracing.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def jaeger_binary() -> Path | None:
    """The built binary, or None when `make binaries` has not built it here."""
    out = subprocess.run(
        ["bash", str(REPO / "e2e/tools/build-binaries.sh"), "--bin-dir"],
        capture_output=True,
        text=True,
        check=False,
    )
    path = Path(out.stdout.strip()) / "jaeger"
    return path if out.returncode == 0 and os.access(path, os.X_OK) else None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def config(host: str, otlp_grpc: int, query_http: int) -> str:
    """Jaeger v2's configuration (an OpenTelemetry Collector's): the all-in-one pipeline of
    cmd/jaeger/config.yaml with memory storage, on `host` only."""
    others = [_free_port(host) for _ in range(3)]
    return f"""
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: {host}:{others[0]}
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: {host}:{query_http}
    grpc:
      endpoint: {host}:{others[1]}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{otlp_grpc}
      http:
        endpoint: {host}:{others[2]}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


@dataclass(frozen=True)
class Jaeger:
    otlp_endpoint: str  # http://host:port, OTLP over gRPC (plain text)
    query_url: str  # http://host:port, the query API (/api/traces/<id>)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace's spans as Jaeger's query API returns them, or None while unknown."""
        try:
            with urllib.request.urlopen(f"{self.query_url}/api/traces/{trace_id}", timeout=5) as r:
                data = json.load(r).get("data") or []
        except OSError:
            return None
        return data[0] if data else None

    def wait_for_spans(
        self, trace_id: str, names: set[str], timeout_s: float = 60
    ) -> dict[str, Any]:
        """The trace once it holds a span of every name in `names` (export is batched)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.trace(trace_id)
            if found is not None and names <= {s["operationName"] for s in found["spans"]}:
                return found
            if time.monotonic() > deadline:
                seen = sorted({s["operationName"] for s in found["spans"]}) if found else []
                raise AssertionError(f"trace {trace_id} has spans {seen}, wanted {sorted(names)}")
            time.sleep(0.5)


@contextlib.contextmanager
def running_jaeger(
    binary: Path, workdir: Path, host: str = "127.0.0.1", otlp_port: int = 0
) -> Iterator[Jaeger]:
    """Jaeger on `host` (OTLP gRPC on `otlp_port`, or a free one), stopped by its PID."""
    otlp, query = otlp_port or _free_port(host), _free_port(host)
    path = workdir / "jaeger.yaml"
    path.write_text(config(host, otlp, query))
    jaeger = Jaeger(f"http://{host}:{otlp}", f"http://{host}:{query}")
    log = workdir / "jaeger.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(binary), "--config", f"file:{path}"], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(f"{jaeger.query_url}/api/services", timeout=2),
                ):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jaeger did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
            yield jaeger
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def span_tree(trace: dict[str, Any]) -> dict[str, Any]:
    """Helpers over a Jaeger trace: span by id, parent of each span, and links.

    Jaeger's model has references, not links: OTLP links become FOLLOWS_FROM references, and
    a link to the span's own parent merges with the parent reference into one FOLLOWS_FROM
    (the batch span's, whose parent is the first request it links). The parent is therefore
    Jaeger's own rule: the first CHILD_OF reference, else the first reference."""
    spans = {s["spanID"]: s for s in trace["spans"]}
    parent: dict[str, str | None] = {}
    links: dict[str, list[str]] = {}
    for span in trace["spans"]:
        refs = span.get("references") or []
        parent[span["spanID"]] = next(
            (r["spanID"] for r in refs if r["refType"] == "CHILD_OF"),
            refs[0]["spanID"] if refs else None,
        )
        links[span["spanID"]] = [r["spanID"] for r in refs if r["refType"] == "FOLLOWS_FROM"]
    return {"spans": spans, "parent": parent, "links": links}
