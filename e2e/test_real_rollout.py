"""Rollouts on real pods: no request lost while a version replaces another, and canary
analysis on the runtime's real metrics, scraped by Prometheus through Kubernetes discovery.

Requests go through the model's ClusterIP Service as clients behind kube-proxy send them:
fresh connections, keep-alive HTTP/1.1 connections and a long-lived gRPC channel (realnode's
LoadGenerator, no retries). Readiness gates, preStop, endpoint removal and the runtime's drain
(`Connection: close`, then gRPC GOAWAY) all have to work together for the failure count to
stay at zero.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from dataplane import Prometheus
from harness import condition, kubectl_apply, kubectl_json, wait_until
from realnode import (
    LoadGenerator,
    canary_rollout,
    model_manifest,
    serving_url,
)
from test_core import pods_of, wait_ready

pytestmark = pytest.mark.real_node


def get(ns: str, name: str) -> dict[str, Any]:
    return dict(kubectl_json("get", "im", name, "-n", ns))


def only_revision_left(ns: str, name: str, version: str) -> bool:
    """The new version is stable and every pod of the old revisions is gone."""
    status = get(ns, name).get("status") or {}
    pods = pods_of(ns, name)
    versions = {p["metadata"]["annotations"].get("serving.kinfer.io/model-version") for p in pods}
    return status.get("stableModelVersion") == version and versions == {version}


def roll_under_load(ns: str, manifest: dict[str, Any], timeout: float) -> LoadGenerator:
    kubectl_apply(manifest, ns)
    wait_ready(ns, "demo", timeout=180)
    with LoadGenerator(serving_url(ns, "demo"), "demo", clients=4) as load:
        wait_until(lambda: load.total >= 40, 60, "traffic through the Service")
        manifest["spec"]["model"]["version"] = "2"
        kubectl_apply(manifest, ns)
        wait_until(lambda: only_revision_left(ns, "demo", "2"), timeout, "version 2 alone")
        time.sleep(3)  # requests after the last old pod went away
    return load


def report(load: LoadGenerator, capsys: pytest.CaptureFixture[str]) -> None:
    """The request count goes to the terminal, passed or not: it is this case's figure."""
    with capsys.disabled():
        print(
            f" [{load.total} requests, {load.outcomes['failed']} failed: {load.summary()}]",
            end="",
        )


def test_version_bump_under_load_loses_no_request(
    namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    load = roll_under_load(namespace, model_manifest("demo", replicas=2), timeout=180)
    report(load, capsys)
    assert load.outcomes["failed"] == 0, load.failures[:10]
    assert load.outcomes["ok"] >= 100


def test_canary_under_load_loses_no_request(
    namespace: str, real_prometheus: Prometheus, capsys: pytest.CaptureFixture[str]
) -> None:
    rollout = canary_rollout(real_prometheus.endpoint, [(50, 3)])
    manifest = model_manifest("demo", replicas=2, rollout=rollout)
    load = roll_under_load(namespace, manifest, timeout=240)
    report(load, capsys)
    assert load.outcomes["failed"] == 0, load.failures[:10]
    rollout = get(namespace, "demo")["status"]["rollout"]
    assert rollout["phase"] == "Succeeded"
    assert rollout["lastAnalysis"]["decision"] == "Pass"


def test_faulty_canary_is_rolled_back_on_its_real_error_rate(
    namespace: str, real_prometheus: Prometheus
) -> None:
    rollout = canary_rollout(real_prometheus.endpoint, [(50, 30)], failureLimit=2)
    manifest = model_manifest("demo", replicas=2, rollout=rollout)
    kubectl_apply(manifest, namespace)
    first = wait_ready(namespace, "demo", timeout=180)["status"]["stableRevision"]
    with LoadGenerator(serving_url(namespace, "demo"), "demo", clients=4) as load:
        wait_until(lambda: load.total >= 20, 60, "traffic through the Service")
        # The faulty demo model loads and warms up, then fails on every real input.
        manifest["spec"]["model"] |= {
            "uri": "file:///models/demo-faulty/model.onnx",
            "version": "2",
        }
        kubectl_apply(manifest, namespace)
        rollout = wait_until(
            lambda: (
                (r := get(namespace, "demo")["status"].get("rollout") or {}).get("phase")
                == "RolledBack"
                and r
            ),
            180,
            "the faulty canary to be rolled back",
        )
    assert rollout["reason"] == "AnalysisFailed"
    metric = next(m for m in rollout["lastAnalysis"]["metrics"] if m["name"] == "error-rate")
    assert metric["verdict"] == "Fail" and float(metric["value"]) > 0.01
    im = get(namespace, "demo")
    assert im["status"]["stableRevision"] == first
    assert condition(im, "Degraded")["reason"] == "RolledBack"
    # Clients did see the canary's errors (that is what the analysis measured) until rollback.
    assert load.outcomes["failed"] > 0


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(0.99 * (len(ordered) - 1))] if ordered else float("nan")


def _window(load: LoadGenerator, start: float, end: float) -> tuple[int, int, float]:
    """(requests, failed, p99 seconds) of the requests sent in [start, end)."""
    answered = [d for sent, d in load.latencies if start <= sent < end]
    failed = sum(start <= t < end for t in load.failed_at)
    return len(answered) + failed, failed, _p99(answered)


def _phase(ns: str) -> str:
    return str((get(ns, "demo")["status"].get("rollout") or {}).get("phase", ""))


def test_reuse_canary_promotion_and_rollback_under_load_lose_no_request(
    namespace: str, real_prometheus: Prometheus, capsys: pytest.CaptureFixture[str]
) -> None:
    """capacity reuse (3 replicas, maxSurge 1) through its steps, its promotion (old pods
    retired one per step) and an aborted canary (its replicas moved back), under continuous
    load through the Service: no failed request. The table compares each phase's p99 with
    steady state (printed; the only assertion is 0 failed)."""
    ns = namespace
    rollout = canary_rollout(real_prometheus.endpoint, [(34, 3), (67, 3)])
    rollout["canary"]["capacity"] = {"mode": "reuse", "maxSurge": 1}
    rollout["retire"] = {"podsPerStep": 1, "intervalSeconds": 3}
    manifest = model_manifest("demo", replicas=3, rollout=rollout)
    kubectl_apply(manifest, ns)
    wait_ready(ns, "demo", timeout=180)
    most = 0
    with LoadGenerator(serving_url(ns, "demo"), "demo", clients=4) as load:
        wait_until(lambda: load.total >= 40, 60, "traffic through the Service")
        steady_start = time.monotonic()
        time.sleep(15)
        steady_end = canary_start = time.monotonic()

        manifest["spec"]["model"]["version"] = "2"
        kubectl_apply(manifest, ns)
        promoting = wait_until(
            lambda: _phase(ns) in ("Promoting", "Succeeded") and time.monotonic(), 240, "promotion"
        )

        def promoted() -> bool:
            nonlocal most
            most = max(most, len(pods_of(ns, "demo")))
            return only_revision_left(ns, "demo", "2")

        wait_until(promoted, 240, "version 2 alone", interval=0.5)
        promoted_at = time.monotonic()
        time.sleep(3)

        manifest["spec"]["model"]["version"] = "3"
        kubectl_apply(manifest, ns)
        canary = wait_until(
            lambda: (
                (r := get(ns, "demo")["status"].get("rollout") or {}).get("modelVersion") == "3"
                and r.get("step") == 1
                and r["revision"]
            ),
            240,
            "the version 3 canary at its second step",
        )
        aborted_at = time.monotonic()
        kubectl_apply(
            {
                **manifest,
                "metadata": {
                    **manifest["metadata"],
                    "annotations": {"serving.kinfer.io/abort": canary},
                },
            },
            ns,
        )

        def moved_back() -> bool:
            nonlocal most
            most = max(most, len(pods_of(ns, "demo")))
            return _phase(ns) == "RolledBack" and only_revision_left(ns, "demo", "2")

        wait_until(moved_back, 240, "version 3's replicas moved back", interval=0.5)
        time.sleep(3)
        end = time.monotonic()

    rows = [
        ("steady state", *_window(load, steady_start, steady_end)),
        ("canary steps", *_window(load, canary_start, promoting)),
        ("promotion", *_window(load, promoting, promoted_at)),
        ("canary, abort, move back", *_window(load, promoted_at, end)),
    ]
    steady_p99 = rows[0][3]
    with capsys.disabled():
        print(f"\nreuse canary under load (3 replicas, maxSurge 1; most pods seen {most})")
        print("| phase | requests | failed | p99 ms | p99 / steady |")
        print("|---|---|---|---|---|")
        for name, count, failed, p99 in rows:
            print(f"| {name} | {count} | {failed} | {p99 * 1000:.1f} | {p99 / steady_p99:.2f}x |")
        print(f"abort sent at +{aborted_at - steady_start:.0f}s")
    assert load.outcomes["failed"] == 0, load.failures[:10]
    assert get(ns, "demo")["status"]["rollout"]["reason"] == "ManualAbort"
