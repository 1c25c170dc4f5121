"""Autoscaling on a custom metric: in-flight requests of a real runtime under real load scale
the HPA up and back down.

See e2e/autoscaling.py for what is real and what is emulated."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from autoscaling import (
    Recorder,
    get_im,
    manifest,
    stables,
    wait_ready,
)
from custom_metrics import CustomMetricsServer
from dataplane import _Runtime
from harness import condition, kubectl_apply, wait_until
from kinfer_operator.children.hpa import INFLIGHT_METRIC
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.host_services(
    "a custom metrics API server on this host, behind an APIService"
)

# -- 2: a custom metric from the real runtime ------------------------------------------------

CUSTOM_MODEL = "inflight-scaled"
CONCURRENCY_TARGET = 4
CLIENTS = 16


class RuntimeInflight:
    """Per-pod `kinfer_inflight_requests` for the HPA, read from a real runtime's /metrics.

    One runtime process stands in for every pod of the revision (kwok runs no containers), so
    the gauge it exports is the revision's total and is divided evenly over the pods the HPA
    selected, as a Service spreading the same requests would divide them.
    """

    def __init__(self) -> None:
        self.runtimes: dict[str, _Runtime] = {}
        self.readings: list[float] = []

    def total(self, namespace: str) -> float:
        runtime = self.runtimes.get(namespace)
        if runtime is None:
            raise LookupError(f"no runtime serves namespace {namespace} yet")
        url = f"http://127.0.0.1:{runtime.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == INFLIGHT_METRIC
        )

    def values(self, namespace: str, metric: str, pods: list[str]) -> dict[str, float]:
        total = self.total(namespace)
        self.readings.append(total)
        return {pod: total / len(pods) for pod in pods}


@pytest.fixture(scope="module")
def inflight() -> RuntimeInflight:
    """Where the metrics server reads values; tests plug their runtime in per namespace."""
    return RuntimeInflight()


@pytest.fixture(scope="module")
def custom_metrics(
    inflight: RuntimeInflight, tmp_path_factory: pytest.TempPathFactory, emulated_cluster: None
) -> Iterator[CustomMetricsServer]:
    """The test-only custom.metrics.k8s.io, registered once per module: the APIService
    `v1beta2.custom.metrics.k8s.io` is cluster-scoped and only one server can own it."""
    server = CustomMetricsServer(
        tmp_path_factory.mktemp("custom-metrics"), (INFLIGHT_METRIC,), inflight.values
    )
    server.start()
    try:
        server.register()
        yield server
    finally:
        server.unregister()
        server.stop()


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model's slow variant: requests pile up, as on a saturated GPU."""
    out = tmp_path_factory.mktemp("slow-model")
    exe = Path(sys.executable).with_name("kinfer-runtime")
    subprocess.run(
        [str(exe), "demo-model", "--out", str(out), "--variant", "slow", "--onnx-only"],
        check=True,
        capture_output=True,
    )
    return out / "model.onnx"


class ClosedLoopClients:
    """`count` clients, each sending its next inference request as soon as one returns."""

    def __init__(self, url: str, count: int) -> None:
        from kinfer_runtime.demo import IMAGE_SHAPE, INPUT_NAME

        shape = [1, *IMAGE_SHAPE]
        size = 1
        for dim in shape:
            size *= dim
        self.body = json.dumps(
            {
                "inputs": [
                    {"name": INPUT_NAME, "shape": shape, "datatype": "FP32", "data": [0.5] * size}
                ]
            }
        ).encode()
        self.url, self.count = url, count
        self.codes: Counter[int] = Counter()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._client, daemon=True) for _ in range(self.count)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=35)

    def _client(self) -> None:
        headers = {"content-type": "application/json"}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    code = client.post(self.url, content=self.body, headers=headers).status_code
                except httpx.HTTPError:
                    code = 0
                self.codes[code] += 1


def test_inflight_requests_from_the_runtime_scale_the_hpa_up_and_down(
    namespace: str,
    custom_metrics: CustomMetricsServer,
    inflight: RuntimeInflight,
    slow_model: Path,
    tmp_path: Path,
) -> None:
    autoscaling = {
        "minReplicas": 1,
        "maxReplicas": 6,
        "metrics": [{"type": "concurrency", "target": CONCURRENCY_TARGET}],
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Percent", "value": 500, "periodSeconds": 5}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 5,
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}],
            },
        },
    }
    kubectl_apply(manifest(CUSTOM_MODEL, autoscaling), namespace)
    revision = wait_ready(namespace, CUSTOM_MODEL)["status"]["stableRevision"]
    runtime = _Runtime(CUSTOM_MODEL, "1", revision, slow_model, tmp_path / "runtime.log")
    inflight.runtimes[namespace] = runtime
    clients = ClosedLoopClients(f"{runtime.base}/v2/models/{CUSTOM_MODEL}/infer", CLIENTS)
    phase = "idle"
    try:
        wait_until(runtime.ready, 60, "the runtime to load the model")
        with Recorder(namespace, CUSTOM_MODEL, lambda: phase) as recorder:

            def stable_at(check: Callable[[int], bool]) -> bool:
                s = recorder.samples[-1] if recorder.samples else None
                stable = s.stable() if s else None
                return bool(stable and stable.spec == stable.ready and check(stable.spec))

            phase = f"{CLIENTS} clients"
            loaded_at = time.monotonic()
            clients.start()
            wait_until(lambda: stable_at(lambda n: n >= 3), 60, "a scale-up on in-flight requests")
            scaled_up_after = time.monotonic() - loaded_at
            time.sleep(7)  # an HPA pass or so at the level the load settles on
            peak_readings = list(inflight.readings[-3:])
            phase = "no clients"
            clients.stop()
            wait_until(lambda: stable_at(lambda n: n == 1), 60, "a scale-down once idle")
        table = recorder.table(
            f"Custom metric ({INFLIGHT_METRIC} target {CONCURRENCY_TARGET}/pod, from a real "
            f"runtime under {CLIENTS} closed-loop clients; scaled up {scaled_up_after:.1f}s "
            "after the load started)"
        )
        print("\n" + table)
    finally:
        clients.stop()
        runtime.stop()
        inflight.runtimes.pop(namespace, None)

    # The HPA asked our aggregated API for exactly the stable revision's pods...
    queries = custom_metrics.queries_for(namespace)
    assert queries, "the HPA never queried custom.metrics.k8s.io"
    assert all(f"serving.kinfer.io/revision={revision}" in q.label_selector for q in queries)
    # ...the runtime really had the load in flight, and the HPA scaled on it within bounds.
    assert max(peak_readings) >= 2 * CONCURRENCY_TARGET, peak_readings
    peak = max(st.spec for _, st in stables(recorder.samples))
    assert 3 <= peak <= 6, table
    assert clients.codes[200] > 0 and set(clients.codes) <= {0, 200}, clients.codes
    ready = condition(get_im(namespace, CUSTOM_MODEL), "Ready")
    assert ready is not None and ready["status"] == "True"
