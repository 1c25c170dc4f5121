"""The activator the chart installs: HA workload, its routes mount, how the operator finds it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kinfer_operator.children.activator_routes import CONFIGMAP_NAME

Render = Callable[..., list[dict[str, Any]]]


def _activator(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] == kind
        and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "activator"
    ]


def _operator_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (workload,) = [
        d for d in docs if d["kind"] == "Deployment" and d not in _activator(docs, "Deployment")
    ]
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_two_activator_replicas_run_the_runtime_image_command_with_a_budget(
    render: Render,
) -> None:
    docs = render()
    (deployment,) = _activator(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["kinfer-activator"]
    assert container["image"].startswith("kinfer/runtime:")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (pdb,) = _activator(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_one_activator_replica_gets_no_budget_that_would_block_drains(render: Render) -> None:
    assert not _activator(render(**{"activator.replicas": "1"}), "PodDisruptionBudget")


def test_the_activator_watches_the_routes_configmap_and_may_read_only_it(render: Render) -> None:
    docs = render()
    (deployment,) = _activator(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert f"--routes-configmap={CONFIGMAP_NAME}" in container["args"]
    (namespace,) = [e for e in container["env"] if e["name"] == "POD_NAMESPACE"]
    assert namespace["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # Not mounted: the kubelet would deliver a change only at its next sync.
    assert not any(v.get("configMap") for v in pod["volumes"])
    (role,) = [r for r in _activator(docs, "Role") if r["metadata"]["name"].endswith("-table")]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [CONFIGMAP_NAME],
            "verbs": ["get", "list", "watch"],
        }
    ]
    (binding,) = [
        b
        for b in _activator(docs, "RoleBinding")
        if b["roleRef"]["name"] == role["metadata"]["name"]
    ]
    (subject,) = binding["subjects"]
    assert subject["name"] == pod["serviceAccountName"]


def test_the_chart_never_renders_the_routes_table_itself(render: Render) -> None:
    names = [d["metadata"]["name"] for d in render() if d["kind"] == "ConfigMap"]
    assert CONFIGMAP_NAME not in names


def test_the_operator_is_told_where_the_activator_service_is(render: Render) -> None:
    docs = render()
    (service,) = _activator(docs, "Service")
    (deployment,) = _activator(docs, "Deployment")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    env = _operator_env(docs)
    assert env["KINFER_ACTIVATOR_SERVICE"] == service["metadata"]["name"]
    assert env["KINFER_ACTIVATOR_NAMESPACE"] == service["metadata"]["namespace"]


def test_disabled_activator_renders_nothing_and_tells_the_operator_nothing(
    render: Render,
) -> None:
    docs = render(**{"activator.enabled": "false"})
    assert not [
        d
        for d in docs
        if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "activator"
    ]
    assert "KINFER_ACTIVATOR_SERVICE" not in _operator_env(docs)


def test_activator_selector_does_not_select_operator_pods(render: Render) -> None:
    docs = render()
    (activator,) = _activator(docs, "Deployment")
    operator = next(d for d in docs if d["kind"] == "Deployment" and d is not activator)
    selector = activator["spec"]["selector"]["matchLabels"]
    labels = operator["spec"]["template"]["metadata"]["labels"]
    assert any(labels.get(k) != v for k, v in selector.items())
