"""Control-plane chaos on the real lane: a frozen API server must stop neither the data plane
nor the rollout.

kube-proxy's rules, the pods and the runtime keep serving while the API server is stopped
(SIGSTOP); once it answers again, every controller picks up where it was. Before
kube-controller-manager and kube-scheduler ran without leader election, both exited after
losing their lease during such a freeze, and a canary stalled at its first step because its
Deployment never scaled again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from dataplane import Prometheus
from harness import kubectl, kubectl_apply, kubectl_json, wait_until
from realnode import LoadGenerator, canary_rollout, model_manifest, serving_url
from test_core import wait_ready

FREEZE_SECONDS = 30


# It freezes the API server: nothing else may run meanwhile.
pytestmark = [pytest.mark.real_node, pytest.mark.exclusive]


def _pid_of(component: str) -> int:
    """The PID kwokctl recorded for a control-plane component of the local cluster."""
    cluster_dir = Path(os.environ["KUBECONFIG"]).parent
    pid_file = cluster_dir / "kwok" / "clusters" / "kinfer" / "pids" / f"{component}.pid"
    if not pid_file.exists():
        pytest.skip(f"needs the local control plane (no {pid_file})")
    return int(pid_file.read_text().strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _rollout(ns: str) -> dict[str, Any]:
    return dict(
        (kubectl_json("get", "im", "demo", "-n", ns).get("status") or {}).get("rollout") or {}
    )


def _event_count(ns: str, reason: str) -> int:
    listed = kubectl(
        "get", "events", "-n", ns, "--field-selector", f"reason={reason}", "-o", "name"
    ).stdout.split()
    return len(listed)


@pytest.mark.timeout(600)
def test_a_frozen_api_server_stops_neither_serving_nor_the_canary(
    namespace: str, real_prometheus: Prometheus, capsys: pytest.CaptureFixture[str]
) -> None:
    apiserver = _pid_of("kube-apiserver")
    controllers = {c: _pid_of(c) for c in ("kube-controller-manager", "kube-scheduler")}
    rollout = canary_rollout(real_prometheus.endpoint, [(25, 20), (50, 3)])
    manifest = model_manifest("demo", replicas=2, rollout=rollout)
    kubectl_apply(manifest, namespace)
    wait_ready(namespace, "demo", timeout=180)
    with LoadGenerator(serving_url(namespace, "demo"), "demo", clients=4) as load:
        wait_until(lambda: load.total >= 40, 60, "traffic through the Service")
        manifest["spec"]["model"]["version"] = "2"
        kubectl_apply(manifest, namespace)
        wait_until(
            lambda: (
                _rollout(namespace).get("phase") == "Progressing"
                and _rollout(namespace).get("weight", 0) > 0
            ),
            120,
            "the canary to take its first weight",
        )
        before = load.total
        os.kill(apiserver, signal.SIGSTOP)
        try:
            time.sleep(FREEZE_SECONDS)
            served_while_frozen = load.total - before
        finally:
            os.kill(apiserver, signal.SIGCONT)
        wait_until(
            lambda: _rollout(namespace).get("phase") == "Succeeded",
            300,
            "the canary to complete after the freeze",
        )
        time.sleep(2)
    with capsys.disabled():
        print(
            f" [{served_while_frozen} answered while frozen, {load.total} requests,"
            f" {load.outcomes['failed']} failed: {load.summary()}]",
            end="",
        )
    assert served_while_frozen > 0
    assert load.outcomes["failed"] == 0, load.failures[:10]
    assert {c: _alive(p) for c, p in controllers.items()} == dict.fromkeys(controllers, True)
    assert _event_count(namespace, "RolloutStarted") == 1
    assert _event_count(namespace, "Promoted") == 1
