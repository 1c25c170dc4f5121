"""Load failures in real containers: the runtime's own termination message reaches status,
the kubelet's startup probe restarts a model that loads slower than its budget, and a missing
credentials key is InvalidSpec from the kubelet's CreateContainerConfigError (kwok's fake
kubelet never resolves env, so this needs the real node)."""

from __future__ import annotations

from typing import Any

import pytest
from harness import condition, kubectl, kubectl_apply, kubectl_json, wait_until
from realnode import model_manifest, start_model_server
from test_core import pods_of, wait_ready

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


def test_a_missing_credentials_key_is_invalid_spec_until_the_key_is_added(namespace: str) -> None:
    base = start_model_server(namespace)
    manifest = model_manifest("demo", uri=f"{base}/demo/model.onnx")
    manifest["spec"]["model"]["credentials"] = {"name": "hub-token", "key": "authorization"}
    kubectl("create", "secret", "generic", "hub-token", "-n", namespace, "--from-literal=x=y")
    kubectl_apply(manifest, namespace)

    def invalid() -> dict[str, Any] | None:
        ready = condition(kubectl_json("get", "im", "demo", "-n", namespace), "Ready")
        return ready if ready and ready["reason"] == "InvalidSpec" else None

    # The operator may not read Secrets: the kubelet's message on the pod is the evidence.
    ready = wait_until(invalid, 120, "InvalidSpec from the kubelet's CreateContainerConfigError")
    assert ready["message"].startswith(
        "spec.model.credentials: Secret 'hub-token' has no key 'authorization'"
    ), ready
    stalled = condition(kubectl_json("get", "im", "demo", "-n", namespace), "Stalled")
    assert stalled is not None and stalled["status"] == "True"

    patch = '{"stringData": {"authorization": "Bearer t0ken"}}'
    kubectl("patch", "secret", "hub-token", "-n", namespace, "--type=merge", "-p", patch)
    wait_ready(namespace, "demo", timeout=180)  # the kubelet retries; nothing else changed
