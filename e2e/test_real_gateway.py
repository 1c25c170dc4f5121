"""GatewayAPI canaries through a real gateway: Traefik (e2e/gateway.py) proxying to real
runtime pods on the real node, with the operator waiting for Traefik's own route status.
The split per step on every client path is measured in test_real_client_paths.py; the
fixtures and senders it uses live here.

Which revision answered is read from each response's `model_version` (the runtime reports
the spec.model.version it serves), so the split is measured, not assumed.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from dataplane import Prometheus
from gateway import Traefik
from harness import kubectl, kubectl_apply, kubectl_json, wait_until
from realnode import HEADER_LENGTH, canary_rollout, model_manifest, node_ip

pytestmark = pytest.mark.real_node

PIN = {"header": "x-kinfer-revision", "value": "canary"}


@pytest.fixture(scope="module")
def traefik(tmp_path_factory: pytest.TempPathFactory, operator: object) -> Iterator[Traefik]:
    gw = Traefik(tmp_path_factory.mktemp("traefik"), host=node_ip())
    gw.start()
    try:
        # Host hygiene: the gateway listens on the node's bridge address and nowhere else.
        assert gw.listening() == {f"{node_ip()}:{gw.port}"}, gw.listening()
        yield gw
    finally:
        gw.stop()
        print(f"\ntraefik log: {gw.log_path}")


def _body() -> tuple[bytes, dict[str, str]]:
    batch = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": list(batch.shape),
                    "parameters": {"binary_data_size": batch.nbytes},
                }
            ],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
    return head + batch.tobytes(), headers


def send(
    url: str, host: str, count: int, extra: dict[str, str] | None = None, clients: int = 8
) -> Counter[str]:
    """`count` inferences through the gateway (keep-alive connections, as a client library
    would hold); returns how many each model version answered ('error' for anything else)."""
    body, headers = _body()
    headers = {**headers, "Host": host, **(extra or {})}
    parts = urlsplit(url)
    answered: Counter[str] = Counter()
    lock = threading.Lock()
    left = [count]

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            try:
                conn.request("POST", "/v2/models/demo/infer", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                length = int(response.headers.get(HEADER_LENGTH) or len(payload))
                version = (
                    json.loads(payload[:length])["model_version"]
                    if response.status == 200
                    else f"error {response.status}"
                )
            except (OSError, http.client.HTTPException, ValueError, KeyError) as err:
                version = f"error {type(err).__name__}"
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
            with lock:
                answered[version] += 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answered


def rollout_of(ns: str) -> dict[str, Any]:
    return dict(
        (kubectl_json("get", "im", "demo", "-n", ns).get("status") or {}).get("rollout") or {}
    )


def gateway_spec(gw: Traefik, ns: str, **traffic: Any) -> dict[str, Any]:
    return {
        "mode": "GatewayAPI",
        "gateway": {"parentRefs": [gw.parent_ref], "hostnames": [f"{ns}.kinfer.test"]},
        **traffic,
    }


def stable_behind_gateway(
    ns: str, gw: Traefik, prometheus: Prometheus, steps: list[tuple[int, int]], **traffic: Any
) -> dict[str, Any]:
    rollout = canary_rollout(prometheus.endpoint, steps, intervalSeconds=5)
    rollout["traffic"] = gateway_spec(gw, ns, **traffic)
    manifest = model_manifest("demo", replicas=2, rollout=rollout)
    kubectl_apply(manifest, ns)
    return manifest


def wait_routed(ns: str, gw: Traefik, version: str) -> None:
    """The model answers through the gateway (Traefik programmed the route)."""
    host = f"{ns}.kinfer.test"
    last: list[Counter[str]] = []

    def routed() -> bool:
        last[:] = [send(gw.url, host, 4, clients=1)]
        return last[0][version] == 4

    try:
        wait_until(routed, 180, f"v{version} routed")
    except AssertionError as err:
        pods = kubectl("get", "pods,svc,httproute", "-n", ns, "-o", "wide", check=False).stdout
        raise AssertionError(f"{err}; answers: {last}\n{pods}\n{gw.log_tail(5)}") from None


class LiveTraffic:
    """One client sending unpinned requests through the gateway for the span of a `with`
    block, as users would: the analysis at each step needs live requests in its window."""

    def __init__(self, gw: Traefik, host: str) -> None:
        self.gw, self.host = gw, host
        self.answered: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.answered += send(self.gw.url, self.host, 10, clients=1)
            self._stop.wait(0.05)

    def __enter__(self) -> LiveTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@pytest.mark.timeout(600)
def test_route_whose_backend_does_not_resolve_holds_the_rollout_with_the_reason(
    quiet_cluster: str, traefik: Traefik, real_prometheus: Prometheus
) -> None:
    namespace = quiet_cluster
    # A quota room for two Services: the model's and `demo-stable`; `demo-canary`, the
    # route's second backend, is refused, so Traefik cannot resolve it.
    kubectl_apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "services"},
            "spec": {"hard": {"services": "2"}},
        },
        namespace,
    )
    wait_until(
        lambda: (
            kubectl_json("get", "resourcequota", "services", "-n", namespace)
            .get("status", {})
            .get("hard")
        ),
        30,
        "the quota to be counted (until then the API server refuses every Service)",
    )
    manifest = stable_behind_gateway(namespace, traefik, real_prometheus, [(50, 5)])
    wait_routed(namespace, traefik, "1")
    manifest["spec"]["model"]["version"] = "2"
    kubectl_apply(manifest, namespace)

    def held() -> dict[str, Any] | None:
        r = rollout_of(namespace)
        return r if "BackendNotFound" in (r.get("routeMessage") or "") else None

    rollout = wait_until(held, 180, "the rollout to hold on the unresolved backend")
    assert (
        "ResolvedRefs=False" in rollout["routeMessage"] and "demo-canary" in rollout["routeMessage"]
    )
    assert rollout.get("stepStartedAt") is None and rollout["phase"] == "Progressing"
    events = kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", "reason=RouteNotReady"
    )
    assert any("BackendNotFound" in e["message"] for e in events["items"])
    # The weight stays where the gateway can route it: stable answers everything, no 500s.
    assert rollout["weight"] == 0
    route = kubectl_json("get", "httproute", "demo", "-n", namespace)
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    answered = send(traefik.url, f"{namespace}.kinfer.test", 200)
    assert answered == Counter({"1": 200}), answered
    kubectl("delete", "resourcequota", "services", "-n", namespace)

    def released() -> dict[str, Any] | None:
        r = rollout_of(namespace)
        return r if r.get("weight") == 50 and r.get("stepStartedAt") else None

    # The operator's retry creates the Service, Traefik resolves it, the weight goes on.
    rollout = wait_until(released, 300, "the step to start once the backend resolves")
    assert not rollout.get("routeMessage"), rollout
