"""Load failures in real containers: the runtime's own termination message reaches status,
and the kubelet's startup probe restarts a model that loads slower than its budget."""

from __future__ import annotations

from typing import Any

import pytest
from harness import condition, kubectl_apply, kubectl_json, wait_until
from realnode import model_manifest, start_model_server
from test_core import pods_of

pytestmark = pytest.mark.real_node


def degraded(namespace: str) -> dict[str, Any] | None:
    cond = condition(kubectl_json("get", "im", "demo", "-n", namespace), "Degraded")
    return cond if cond and cond["status"] == "True" else None


def test_broken_model_is_degraded_with_the_containers_termination_message(
    namespace: str,
) -> None:
    kubectl_apply(model_manifest("demo", uri="file:///models/demo-broken/model.onnx"), namespace)
    cond = wait_until(lambda: degraded(namespace), 120, "Degraded/ModelLoadFailed")
    assert cond["reason"] == "ModelLoadFailed"
    # The runtime's line from /dev/termination-log, as the kubelet reported it.
    assert "kinfer-runtime: error:" in cond["message"]
    (pod,) = pods_of(namespace, "demo")
    terminated = [
        (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get("terminated")
        for cs in pod["status"]["containerStatuses"]
    ]
    assert terminated[0] and terminated[0]["exitCode"] != 0
    assert terminated[0]["message"].strip() in cond["message"]


def test_model_slower_than_its_startup_budget_is_restarted_and_status_says_why(
    namespace: str,
) -> None:
    base = start_model_server(namespace, slow_bytes_per_s=10_000)
    manifest = model_manifest(
        "demo", uri=f"{base}/slow/demo/model.onnx", runtime={"startupTimeoutSeconds": 30}
    )
    kubectl_apply(manifest, namespace)

    def restarted() -> dict[str, Any] | None:
        pods = pods_of(namespace, "demo")
        statuses = [cs for p in pods for cs in p["status"].get("containerStatuses") or []]
        return next((cs for cs in statuses if cs["restartCount"] >= 1), None)

    status = wait_until(restarted, 150, "the startup probe to restart the runtime")
    assert not status["ready"]
    cond = wait_until(lambda: degraded(namespace), 60, "Degraded with the reason")
    assert cond["reason"] == "StartupTimeout", cond
    assert "startupTimeoutSeconds" in cond["message"]
