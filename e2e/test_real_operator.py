"""The operator from its image: the chart installs it on the real node, it reconciles as the
chart's ServiceAccount through in-cluster config, and when the active replica's pod is
deleted mid-canary the standby resumes at the same step.

The session's local operator is stopped meanwhile (as in test_chart.py), so every write is
the in-cluster operator's; it watches the whole cluster, so the test waits for a quiet one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import LocalOperator
from dataplane import Prometheus
from harness import kubectl, kubectl_apply, kubectl_json, wait_until
from realnode import (
    NODE_NAME,
    LoadGenerator,
    canary_rollout,
    images,
    model_manifest,
    serving_url,
)
from test_chart import Release, chart_on_real_node
from test_core import wait_ready

pytestmark = pytest.mark.real_node


@pytest.fixture
def chart_operator(
    quiet_cluster: str, operator: LocalOperator | None, real_prometheus: Prometheus
) -> Iterator[Release]:
    values = {
        # A standby takes over once the active replica has not renewed for this long (a
        # deleted pod releases the Lease on SIGTERM: then at the standby's next try).
        "leaderElection.leaseDuration": "10",
        "leaderElection.renewDeadline": "6",
        # The same endpoint name the local operator's configuration gives it.
        f"prometheus.endpoints.{real_prometheus.endpoint}.url": real_prometheus.url,
    }
    with chart_on_real_node(operator, **values) as release:
        yield release


def active_peer(release: Release) -> str:
    """The pod holding the release's Lease: the one replica that acts. Its holder identity
    is the pod's name and a random suffix."""
    holder: str = wait_until(
        lambda: (
            kubectl_json("get", "lease", release.lease, "-n", release.namespace).get("spec") or {}
        ).get("holderIdentity"),
        30,
        "a holder of the release's Lease",
    )
    return holder.rpartition("_")[0]


def rollout_status(ns: str) -> dict[str, Any]:
    return dict(kubectl_json("get", "im", "demo", "-n", ns)["status"].get("rollout") or {})


def test_operator_image_resumes_a_canary_after_its_active_pod_is_deleted(
    quiet_cluster: str, chart_operator: Release, real_prometheus: Prometheus
) -> None:
    namespace, release = quiet_cluster, chart_operator
    pods = kubectl_json(
        "get", "pods", "-n", release.namespace, "-l", "app.kubernetes.io/name=kinfer-operator"
    )["items"]
    assert len(pods) == 2 and {p["spec"]["nodeName"] for p in pods} == {NODE_NAME}
    for pod in pods:
        assert pod["spec"]["serviceAccountName"] == release.account
        assert pod["spec"]["containers"][0]["image"] == images()["KINFER_OPERATOR_IMAGE"]

    canary = canary_rollout(real_prometheus.endpoint, [(50, 40), (100, 2)])
    manifest = model_manifest("demo", replicas=2, rollout=canary)
    kubectl_apply(manifest, namespace)
    wait_ready(namespace, "demo", timeout=180)
    with LoadGenerator(serving_url(namespace, "demo"), "demo", clients=2):
        manifest["spec"]["model"]["version"] = "2"
        kubectl_apply(manifest, namespace)
        at_step = wait_until(
            lambda: (
                (r := rollout_status(namespace)).get("phase") == "Progressing"
                and r.get("stepStartedAt")
                and r
            ),
            180,
            "the canary's first step",
        )
        victim = active_peer(release)
        kubectl("delete", "pod", "-n", release.namespace, victim, "--wait=false")
        # The other replica takes over and finishes the rollout from where it was.
        wait_until(lambda: rollout_status(namespace).get("phase") == "Succeeded", 240, "promotion")
    assert active_peer(release) != victim
    assert at_step["step"] == 0
    started = kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=RolloutStarted", "-o", "name"
    ).stdout.split()
    assert len(started) == 1, "the new active replica restarted the rollout"
    status = kubectl_json("get", "im", "demo", "-n", namespace)["status"]
    assert status["stableModelVersion"] == "2"
