"""The chart's RBAC: no wildcards, exactly the operator's needs, nothing cluster-wide when
namespaced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kinfer_operator._kube import API_VERSIONS
from kinfer_operator.world.store import CHILD_KINDS

Render = Callable[..., list[dict[str, Any]]]
NAMESPACED = {"watchNamespaces": "{team-a,team-b}"}
VALUE_SETS = [
    {},
    NAMESPACED,
    {"gatewayAPI.enabled": "true"},
    {**NAMESPACED, "gatewayAPI.enabled": "true"},
]


def _roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's rules for models and children (the leader-election Role, which has
    only the Lease, is checked in test_chart_leader_election.py)."""
    return [
        d
        for d in docs
        if d["kind"] in {"ClusterRole", "Role"}
        and not d["metadata"]["name"].endswith("-leader-election")
    ]


def _verbs(role: dict[str, Any], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in role["rules"]
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("values", VALUE_SETS, ids=lambda v: ",".join(v) or "defaults")
def test_no_rbac_rule_contains_a_wildcard(render: Render, values: dict[str, str]) -> None:
    roles = _roles(render(**values))
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(field, [])), (role, rule)


def test_cluster_mode_is_one_cluster_role_bound_to_the_service_account(render: Render) -> None:
    docs = render()
    assert [d["kind"] for d in _roles(docs)] == ["ClusterRole"]
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    account = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": "kinfer-system",
        }
    ]


def test_namespaced_mode_grants_nothing_cluster_wide(render: Render) -> None:
    docs = render(**NAMESPACED)
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    roles = _roles(docs)
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [
        d
        for d in docs
        if d["kind"] == "RoleBinding" and not d["metadata"]["name"].endswith("-leader-election")
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    env = _operator_env(docs)
    assert env["KINFER_WATCH_NAMESPACES"] == "team-a,team-b"


def _operator_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    workload = next(d for d in docs if d["kind"] == "Deployment")
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# Child kinds the operator writes only when a values flag says the cluster has their API.
OPT_IN_KINDS = {"HTTPRoute": "gatewayAPI.enabled"}


@pytest.mark.parametrize("values", [{}, NAMESPACED], ids=["cluster", "namespaced"])
def test_every_child_kind_the_operator_writes_is_granted(
    render: Render, values: dict[str, str]
) -> None:
    default_roles = _roles(render(**values))
    all_roles = _roles(render(**values, **dict.fromkeys(OPT_IN_KINDS.values(), "true")))
    for kind in CHILD_KINDS:
        group = API_VERSIONS[kind].rpartition("/")[0]
        for role in all_roles if kind in OPT_IN_KINDS else default_roles:
            verbs = _verbs(role, group, f"{kind.lower()}s")
            # create+patch: server-side apply; list+watch: the informer cache; delete: prune.
            assert {"create", "patch", "list", "watch", "delete"} <= verbs, (kind, verbs)
    for role in default_roles:
        # GitOps owns spec: the API server refuses any write of the operator's outside status.
        assert _verbs(role, "serving.kinfer.io", "inferencemodels") == {"get", "list", "watch"}
        assert _verbs(role, "serving.kinfer.io", "inferencemodels/status") == {"patch"}
        assert _verbs(role, "apps", "deployments/scale") == {"patch"}


def test_secrets_are_only_read_one_by_one(render: Render) -> None:
    for role in _roles(render()) + _roles(render(**NAMESPACED)):
        assert _verbs(role, "", "secrets") == {"get"}
        assert not _verbs(role, "", "pods") - {"get", "list", "watch"}


def test_no_kopf_peering_rights_are_granted(render: Render) -> None:
    for role in _roles(render()) + _roles(render(**NAMESPACED)):
        assert not _verbs(role, "kopf.dev", "clusterkopfpeerings")
        assert not _verbs(role, "kopf.dev", "kopfpeerings")


def test_gateway_api_httproutes_only_when_enabled(render: Render) -> None:
    (off,) = _roles(render())
    assert not _verbs(off, "gateway.networking.k8s.io", "httproutes")
    (on,) = _roles(render(**{"gatewayAPI.enabled": "true"}))
    assert _verbs(on, "gateway.networking.k8s.io", "httproutes") == {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    }
