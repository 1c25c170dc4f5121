"""The operator process itself: peering (one active replica), health, metrics, JSON logs."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from conftest import LocalOperator
from harness import example, kubectl, kubectl_apply, kubectl_json, wait_until


def _peered(
    tmp_path: Path, namespace: str, name: str, priority: int, lifetime: int = 8
) -> LocalOperator:
    return LocalOperator(
        tmp_path,
        args=(
            "--log-format",
            "json",
            "--namespace",
            namespace,
            "--peering",
            "kinfer",
            "--priority",
            str(priority),
            "--peering-lifetime",
            str(lifetime),
        ),
        name=name,
    )


def _ready_replicas(namespace: str) -> int:
    im: dict[str, Any] = kubectl_json("get", "im", "demo-cpu", "-n", namespace)
    return int((im.get("status") or {}).get("readyReplicas") or 0)


def test_only_the_highest_priority_peer_acts_and_a_standby_takes_over(
    namespace: str, tmp_path: Path, without_session_operator: None
) -> None:
    kubectl_apply(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "kinfer"}},
        namespace,
    )
    active = _peered(tmp_path, namespace, "active", 200)
    standby = _peered(tmp_path, namespace, "standby", 100)
    active.start()
    standby.start()
    try:
        kubectl_apply(example("demo-cpu.yaml"), namespace)
        wait_until(lambda: _ready_replicas(namespace) == 2, 60, "the active peer to serve")
        assert active.metric("kinfer_operator_reconciles_total") > 0
        assert standby.metric("kinfer_operator_reconciles_total") == 0

        active.stop(kill=True)  # no goodbye: the standby must notice the silence
        kubectl("scale", "im/demo-cpu", "-n", namespace, "--replicas=3")
        wait_until(lambda: _ready_replicas(namespace) == 3, 90, "the standby to take over")
        assert standby.metric("kinfer_operator_reconciles_total") > 0
    finally:
        active.stop()
        standby.stop()


def test_peers_started_before_their_peering_object_act_only_once_listed(
    namespace: str, tmp_path: Path, without_session_operator: None
) -> None:
    """The chart creates the peering object after the replicas start (a post-install hook),
    so kopf's first keep-alive finds nothing and no replica is listed until its next one.
    None may act meanwhile: both would."""
    active = _peered(tmp_path, namespace, "active", 200, lifetime=20)
    standby = _peered(tmp_path, namespace, "standby", 100, lifetime=20)
    active.start()
    standby.start()
    try:
        kubectl_apply(example("demo-cpu.yaml"), namespace)
        time.sleep(6)  # both watch the model; neither is listed in a peering
        assert active.metric("kinfer_operator_reconciles_total") == 0
        assert standby.metric("kinfer_operator_reconciles_total") == 0
        kubectl_apply(
            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "kinfer"}},
            namespace,
        )
        # Listed at their next keep-alive (every 10-15 s with a 20 s lifetime).
        wait_until(lambda: _ready_replicas(namespace) == 2, 90, "the active peer to serve")
        assert active.metric("kinfer_operator_reconciles_total") > 0
        assert standby.metric("kinfer_operator_reconciles_total") == 0
    finally:
        active.stop()
        standby.stop()


def test_operator_serves_health_and_metrics_and_logs_json(
    namespace: str, tmp_path: Path, without_session_operator: None
) -> None:
    op = LocalOperator(
        tmp_path, args=("--log-format", "json", "--namespace", namespace), name="json"
    )
    op.start()
    try:
        kubectl_apply(example("demo-cpu.yaml"), namespace)
        wait_until(lambda: _ready_replicas(namespace) == 2, 60, "the model to serve")
        with urllib.request.urlopen(f"http://127.0.0.1:{op.health_port}/healthz") as r:
            assert r.status == 200
        assert op.metric("kinfer_operator_reconcile_duration_seconds_count") > 0
        assert op.metric("kinfer_operator_api_writes_total") > 0
    finally:
        op.stop()
    records = [
        json.loads(line) for line in op.log_path.read_text().splitlines() if line.startswith("{")
    ]
    assert records, "no JSON log lines"
    assert any("applying Deployment" in r.get("message", "") for r in records)
