"""Scale to zero end to end on the real node: the chart's activator fronts an idle model,
100 concurrent requests through the model's Service wake it with none failing, and four more
idle -> zero -> wake cycles (five in all) lose nothing either.

The chart installs the operator (from its image) with the activator enabled (one replica of
the runtime image's `kinfer-activator`, which watches the routes ConfigMap, its RBAC). The session's
local operator is stopped meanwhile, as in test_real_operator.py: every write is the
in-cluster operator's and the activator's. Exclusive (quiet_cluster).

Prints the time from the first request to its answer (what a client at zero waits) next to
the pod's own model load time (container start to Ready), the cold start's floor.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from conftest import LocalOperator
from dataplane import Prometheus
from harness import kubectl_apply, kubectl_json, service_addresses, wait_until
from realnode import (
    infer,
    model_manifest,
    reference_logits,
    service_url,
)
from test_chart import Release, chart_on_real_node
from test_core import wait_ready

pytestmark = pytest.mark.real_node

NAME = "sleepy"
IDLE_SECONDS = 30  # the API's least
TARGET_CONCURRENCY = 40
MAX_REPLICAS = 4
BURST = 100
WOKEN = min(MAX_REPLICAS, math.ceil(BURST / TARGET_CONCURRENCY))  # 3
LATER_BURST = 20


@pytest.fixture
def chart_with_activator(
    quiet_cluster: str, operator: LocalOperator | None, real_prometheus: Prometheus
) -> Iterator[Release]:
    values = {
        "activator.enabled": "true",
        "activator.replicas": "1",
        f"prometheus.endpoints.{real_prometheus.endpoint}.url": real_prometheus.url,
    }
    with chart_on_real_node(operator, **values) as release:
        yield release


def _model(ns: str) -> dict[str, Any]:
    return dict(kubectl_json("get", "im", NAME, "-n", ns))


def _deployment(ns: str) -> dict[str, Any]:
    (dep,) = kubectl_json("get", "deploy", "-n", ns, "-l", f"serving.kinfer.io/model={NAME}")[
        "items"
    ]
    return dict(dep)


def _activator_ips(release: Release) -> set[str]:
    pods = kubectl_json(
        "get", "pods", "-n", release.namespace, "-l", "app.kubernetes.io/component=activator"
    )["items"]
    return {p["status"]["podIP"] for p in pods if p["status"].get("podIP")}


def _wait_idle(ns: str, release: Release) -> None:
    # idleSeconds without a request, a Prometheus scrape or two, then the pass.
    wait_until(
        lambda: (
            _model(ns)["status"].get("phase") == "Idle"
            and _deployment(ns)["spec"].get("replicas") == 0
        ),
        IDLE_SECONDS + 90,
        "the model to go Idle at zero replicas",
        interval=1,
    )
    wait_until(
        lambda: (
            not kubectl_json("get", "pods", "-n", ns, "-l", f"serving.kinfer.io/model={NAME}")[
                "items"
            ]
        ),
        60,
        "the model's pods to be gone",
    )
    # The Service is the activator's before any request is sent: kube-proxy finds no other
    # address in any of its slices (a stale one would take part of the burst to a pod that
    # is gone).
    addresses = service_addresses(ns, NAME)
    assert addresses and addresses <= _activator_ips(release), addresses


class _Burst:
    """`count` requests at once through the model's Service; counts failures, records
    when each answer came, and the most replicas the Deployment was asked for meanwhile."""

    def __init__(self, url: str, ns: str, count: int) -> None:
        self.url, self.ns, self.count = url, ns, count
        rng = np.random.default_rng(11)
        self.batch = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
        self.expected = reference_logits(self.batch)
        self.failures: list[str] = []
        self.answered: list[float] = []
        self.most_replicas = 0
        self._lock = threading.Lock()
        self._done = threading.Event()

    def _one(self, _i: int) -> None:
        try:
            got = infer(self.url, NAME, self.batch, timeout=240)
            ok = np.allclose(got, self.expected, atol=1e-4)
            with self._lock:
                if ok:
                    self.answered.append(time.monotonic())
                else:
                    self.failures.append("wrong answer")
        except Exception as err:  # every way a request can fail counts
            with self._lock:
                self.failures.append(f"{type(err).__name__}: {err}")

    def _watch_replicas(self) -> None:
        while not self._done.wait(0.5):
            try:
                replicas = int(_deployment(self.ns)["spec"].get("replicas") or 0)
            except Exception:
                continue
            self.most_replicas = max(self.most_replicas, replicas)

    def run(self) -> float:
        """Send them all; returns the monotonic time they were sent."""
        watcher = threading.Thread(target=self._watch_replicas, daemon=True)
        watcher.start()
        sent = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.count) as pool:
            list(pool.map(self._one, range(self.count)))
        self._done.set()
        watcher.join(timeout=5)
        return sent


def _load_seconds(ns: str) -> float | None:
    """The longest of the model pods' container start -> Ready (the model load)."""
    longest: float | None = None
    for pod in kubectl_json("get", "pods", "-n", ns, "-l", f"serving.kinfer.io/model={NAME}")[
        "items"
    ]:
        statuses = pod["status"].get("containerStatuses") or []
        started = next(
            (s["state"]["running"]["startedAt"] for s in statuses if "running" in s["state"]),
            None,
        )
        ready = next(
            (
                c["lastTransitionTime"]
                for c in pod["status"].get("conditions") or []
                if c["type"] == "Ready" and c["status"] == "True"
            ),
            None,
        )
        if started and ready:
            seconds = (_parse(ready) - _parse(started)).total_seconds()
            longest = seconds if longest is None else max(longest, seconds)
    return longest


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.mark.timeout(900)  # five idle periods of IDLE_SECONDS, each then woken
def test_an_idle_model_wakes_on_a_burst_through_the_activator_and_loses_no_request(
    quiet_cluster: str, chart_with_activator: Release, real_prometheus: Prometheus
) -> None:
    ns = quiet_cluster
    activator = kubectl_json(
        "get",
        "pods",
        "-n",
        chart_with_activator.namespace,
        "-l",
        "app.kubernetes.io/component=activator",
    )["items"]
    print(f"\nactivator pods: {[p['metadata']['name'] for p in activator]}")

    manifest = model_manifest(
        NAME,
        autoscaling={
            "minReplicas": 0,
            "maxReplicas": MAX_REPLICAS,
            "idleSeconds": IDLE_SECONDS,
            "targetConcurrency": TARGET_CONCURRENCY,
            "prometheus": real_prometheus.endpoint,
        },
    )
    kubectl_apply(manifest, ns)
    wait_ready(ns, NAME, timeout=180)
    url = service_url(ns, NAME)

    # 1. Idle -> zero: the activator fronts the model, whose row says atZero.
    _wait_idle(ns, chart_with_activator)
    routes = kubectl_json(
        "get", "configmap", "kinfer-activator-routes", "-n", chart_with_activator.namespace
    )
    rows = json.loads(routes["data"]["routes.json"])["routes"]
    assert [r["atZero"] for r in rows.values() if r["model"] == NAME] == [True]

    # 2. 100 concurrent requests through the Service's ClusterIP wake it; none fails.
    burst = _Burst(url, ns, BURST)
    sent = burst.run()
    assert burst.failures == [], burst.failures[:5]
    assert len(burst.answered) == BURST
    # The activator asks for ceil(held / targetConcurrency), capped at maxReplicas; the HPA
    # may add one more under the burst's load, never past maxReplicas.
    assert WOKEN <= burst.most_replicas <= MAX_REPLICAS, (burst.most_replicas, WOKEN)
    first = min(burst.answered) - sent
    load = _load_seconds(ns)
    load_text = f"{load:.1f}s" if load is not None else "unknown"
    print(
        f"\nfirst answer {first:.1f}s after {BURST} requests at zero; all within "
        f"{max(burst.answered) - sent:.1f}s; the pod's model load (start -> Ready) {load_text}; "
        f"woken to {burst.most_replicas} replicas (ceil({BURST}/{TARGET_CONCURRENCY}) "
        f"capped at {MAX_REPLICAS})"
    )
    wait_until(
        lambda: _model(ns)["status"].get("phase") == "Ready",
        60,
        "the woken model to be Ready",
    )
    assert not service_addresses(ns, NAME) & _activator_ips(chart_with_activator)

    # 3. Four more cycles: idle -> zero -> woken by a smaller burst, nothing lost.
    for cycle in range(2, 6):
        _wait_idle(ns, chart_with_activator)
        again = _Burst(url, ns, LATER_BURST)
        at = again.run()
        assert again.failures == [], (cycle, again.failures[:5])
        print(f"cycle {cycle}: first answer {min(again.answered) - at:.1f}s after the burst")
