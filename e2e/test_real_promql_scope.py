"""Custom canary checks run on the platform's Prometheus, confined to the model's namespace.

A tenant's check that names another namespace's series (by an equality or a regex matcher)
must read nothing there: the operator rewrites every selector to the model's own namespace
before it queries. Real pods, real runtime metrics, the real node's Prometheus.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import SESSION
from dataplane import Prometheus
from harness import kubectl, kubectl_apply, kubectl_json, wait_until
from realnode import LoadGenerator, canary_rollout, model_manifest, serving_url
from test_core import wait_ready

PEER = "peer"


pytestmark = pytest.mark.real_node


@pytest.fixture
def other_namespace(namespace: str) -> Iterator[str]:
    """Another tenant's namespace, watched by the same operator."""
    name = f"e2e-{SESSION}-other-{secrets.token_hex(2)}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "kinfer.io/e2e=true")
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _instant(prometheus: Prometheus, promql: str) -> list[Any]:
    query = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/query?{query}", timeout=5) as r:
        return list(json.loads(r.read())["data"]["result"])


def _metric(namespace: str, check: str) -> dict[str, Any] | None:
    status = kubectl_json("get", "im", "demo", "-n", namespace).get("status") or {}
    last = (status.get("rollout") or {}).get("lastAnalysis") or {}
    return next((m for m in last.get("metrics", []) if m["name"] == check), None)


def test_a_custom_check_naming_another_namespace_reads_nothing_there(
    namespace: str, other_namespace: str, real_prometheus: Prometheus
) -> None:
    # Another tenant's model, answering requests: its series exist in Prometheus.
    kubectl_apply(model_manifest(PEER, replicas=1), other_namespace)
    wait_ready(other_namespace, PEER, timeout=180)
    peer_series = f'kinfer_requests_total{{namespace="{other_namespace}",model="{PEER}"}}'
    checks = [
        # Each would pass on the peer's data (any value is within bounds): only reading
        # nothing makes them Inconclusive.
        {"name": "peek-equal", "query": f"sum({peer_series})", "min": 0, "max": 1e15},
        {
            "name": "peek-regex",
            "query": f'sum(kinfer_requests_total{{namespace=~".+",model="{PEER}"}})',
            "min": 0,
            "max": 1e15,
        },
    ]
    rollout = canary_rollout(real_prometheus.endpoint, [(50, 120)], custom=checks)
    manifest = model_manifest("demo", replicas=2, rollout=rollout)
    kubectl_apply(manifest, namespace)
    wait_ready(namespace, "demo", timeout=180)
    with (
        LoadGenerator(serving_url(other_namespace, PEER), PEER, clients=2) as peer_load,
        LoadGenerator(serving_url(namespace, "demo"), "demo", clients=2),
    ):
        wait_until(lambda: peer_load.total >= 20, 60, "traffic to the other tenant's model")
        wait_until(
            lambda: _instant(real_prometheus, f"sum({peer_series})"),
            60,
            "the other tenant's series in Prometheus",
        )
        manifest["spec"]["model"]["version"] = "2"
        kubectl_apply(manifest, namespace)
        wait_until(
            lambda: _metric(namespace, "peek-equal") and _metric(namespace, "peek-regex"),
            120,
            "an analysis that ran the custom checks",
        )
        # The same query, unconfined, does see the peer's requests.
        (series,) = _instant(real_prometheus, f"sum({peer_series})")
        assert float(series["value"][1]) > 0
    for check in ("peek-equal", "peek-regex"):
        metric = _metric(namespace, check)
        assert metric is not None
        assert metric["verdict"] == "Inconclusive", metric
        assert "value" not in metric, metric
