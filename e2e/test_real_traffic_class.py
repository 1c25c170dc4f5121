"""Traffic classes no client can forge, on real pods: a client of the model's Service that
marks its requests as mirrored (`x-kinfer-shadow`) and pinned (`x-kinfer-pinned: true`) still
has them counted as live, so a faulty canary's failures reach the analysis and it is rolled
back. Only the runtime's classified port (8090), which the model's Service does not expose,
honours those markers.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import numpy as np
import pytest
from dataplane import Prometheus
from harness import condition, kubectl_apply, kubectl_json, wait_until
from realnode import canary_rollout, model_manifest, serving_url
from test_core import wait_ready

SPOOFED = {"x-kinfer-shadow": "stable", "x-kinfer-pinned": "true"}


pytestmark = pytest.mark.real_node


def _get(ns: str) -> dict[str, Any]:
    return dict(kubectl_json("get", "im", "demo", "-n", ns))


class SpoofingClient:
    """Sends inferences through the Service for the span of a `with` block, every one
    carrying both markers; counts answers by HTTP status."""

    def __init__(self, base_url: str) -> None:
        batch = np.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(np.float32)
        tensor = {"name": "input", "datatype": "FP32", "shape": list(batch.shape)}
        self._body = json.dumps({"inputs": [tensor | {"data": batch.ravel().tolist()}]}).encode()
        self._url = f"{base_url}/v2/models/demo/infer"
        self.statuses: Counter[int | str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {"Content-Type": "application/json", **SPOOFED}
        while not self._stop.is_set():
            request = urllib.request.Request(self._url, self._body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status: int | str = response.status
            except urllib.error.HTTPError as err:
                status = err.code
            except OSError as err:
                status = type(err).__name__
            self.statuses[status] += 1
            self._stop.wait(0.02)

    def __enter__(self) -> SpoofingClient:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_a_client_spoofing_the_markers_cannot_hide_a_faulty_canarys_failures(
    namespace: str, real_prometheus: Prometheus, capsys: pytest.CaptureFixture[str]
) -> None:
    rollout = canary_rollout(real_prometheus.endpoint, [(50, 60)], failureLimit=2)
    manifest = model_manifest("demo", replicas=2, rollout=rollout)
    kubectl_apply(manifest, namespace)
    first = wait_ready(namespace, "demo", timeout=180)["status"]["stableRevision"]
    service = kubectl_json("get", "service", "demo", "-n", namespace)
    assert 8090 not in {p["port"] for p in service["spec"]["ports"]}
    with SpoofingClient(serving_url(namespace, "demo")) as client:
        wait_until(lambda: client.statuses[200] >= 20, 60, "spoofed traffic through the Service")
        # The faulty demo model loads and warms up, then fails on every real input.
        manifest["spec"]["model"] |= {
            "uri": "file:///models/demo-faulty/model.onnx",
            "version": "2",
        }
        kubectl_apply(manifest, namespace)
        rollout = wait_until(
            lambda: (
                (r := _get(namespace)["status"].get("rollout") or {}).get("phase") == "RolledBack"
                and r
            ),
            180,
            "the faulty canary to be rolled back despite the spoofed markers",
        )
    with capsys.disabled():
        print(f" [spoofed requests by status: {dict(client.statuses)}]", end="")
    # The client did get the canary's errors, and the analysis counted them as live.
    assert sum(n for status, n in client.statuses.items() if status != 200) > 0
    assert rollout["reason"] == "AnalysisFailed"
    metric = next(m for m in rollout["lastAnalysis"]["metrics"] if m["name"] == "error-rate")
    assert metric["verdict"] == "Fail" and float(metric["value"]) > 0.01
    im = _get(namespace)
    assert im["status"]["stableRevision"] == first
    assert condition(im, "Degraded")["reason"] == "RolledBack"
