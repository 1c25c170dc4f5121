"""The chart's leader election: a Role on the Lease in the release namespace, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Render = Callable[..., list[dict[str, Any]]]


def _election_rbac(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["metadata"]["name"] == "kinfer-leader-election"]


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": "{team-a,team-b}"}])
def test_leases_are_granted_by_a_role_in_the_release_namespace_only(
    render: Render, values: dict[str, str]
) -> None:
    docs = render(**values)
    role, binding = sorted(_election_rbac(docs), key=lambda d: str(d["kind"]))
    assert (role["kind"], binding["kind"]) == ("Role", "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "kinfer-system"
    granted = {
        (verb, tuple(rule.get("resourceNames") or ()))
        for rule in role["rules"]
        for verb in rule["verbs"]
        if rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
    }
    # create cannot be limited to a name by RBAC; reading and renewing are, to this one Lease.
    assert granted == {("create", ()), ("get", ("kinfer",)), ("update", ("kinfer",))}
    assert len(role["rules"]) == 2
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "kinfer-leader-election",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kinfer", "namespace": "kinfer-system"}
    ]
    cluster_wide = [d for d in docs if d["kind"] == "ClusterRole"]
    for cluster_role in cluster_wide:
        assert not [r for r in cluster_role["rules"] if "coordination.k8s.io" in r["apiGroups"]]


def test_standalone_grants_no_lease(render: Render) -> None:
    docs = render(**{"leaderElection.enabled": "false", "replicas": "1"})
    assert not _election_rbac(docs)
