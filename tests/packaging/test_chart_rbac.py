"""The chart's RBAC: no wildcards, exactly the operator's needs, nothing cluster-wide when
namespaced."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kinfer_operator._kube import API_VERSIONS
from kinfer_operator.world.store import CHILD_KINDS

Render = Callable[..., list[dict[str, Any]]]
CHART_README = Path(__file__).resolve().parents[2] / "charts" / "kinfer" / "README.md"
NAMESPACED = {"watchNamespaces": "{team-a,team-b}"}
VALUE_SETS = [
    {},
    NAMESPACED,
    {"gatewayAPI.enabled": "true"},
    {**NAMESPACED, "gatewayAPI.enabled": "true"},
]


def _activator(doc: dict[str, Any]) -> bool:
    """The activator's own identity (its roles are checked apart, below)."""
    return (doc["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "activator"


def _roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's rules for models and children (the leader-election Role, which has
    only the Lease, is checked in test_chart_leader_election.py; the release-namespace Role
    for the activator's routes table in test_operator_rights_for_the_activator_*)."""
    return [
        d
        for d in docs
        if d["kind"] in {"ClusterRole", "Role"}
        and not d["metadata"]["name"].endswith(("-leader-election", "-activator-routes"))
        and not _activator(d)
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
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding" and not _activator(d))
    account = next(d for d in docs if d["kind"] == "ServiceAccount" and not _activator(d))
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
        if d["kind"] == "RoleBinding"
        and not d["metadata"]["name"].endswith(("-leader-election", "-activator-routes"))
        and not _activator(d)
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    env = _operator_env(docs)
    assert env["KINFER_WATCH_NAMESPACES"] == "team-a,team-b"


def _operator_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    workload = next(d for d in docs if d["kind"] == "Deployment" and not _activator(d))
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# Child kinds the operator writes only when a values flag says the cluster has their API.
OPT_IN_KINDS = {"HTTPRoute": "gatewayAPI.enabled", "GRPCRoute": "gatewayAPI.enabled"}


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
            # No get: every read comes from the cache.
            assert verbs == {"create", "patch", "list", "watch", "delete"}, (kind, verbs)
    for role in default_roles:
        # GitOps owns spec: the API server refuses any write of the operator's outside status.
        assert _verbs(role, "serving.kinfer.io", "inferencemodels") == {"get", "list", "watch"}
        assert _verbs(role, "serving.kinfer.io", "inferencemodels/status") == {"patch"}
        assert _verbs(role, "apps", "deployments/scale") == {"patch"}


def test_no_secret_is_readable_and_pods_only_observed(render: Render) -> None:
    for role in _roles(render()) + _roles(render(**NAMESPACED)):
        assert not _verbs(role, "", "secrets")
        assert _verbs(role, "", "pods") == {"list", "watch"}
        assert _verbs(role, "", "pods/log") == {"get"}


def test_no_kopf_peering_rights_are_granted(render: Render) -> None:
    for role in _roles(render()) + _roles(render(**NAMESPACED)):
        assert not _verbs(role, "kopf.dev", "clusterkopfpeerings")
        assert not _verbs(role, "kopf.dev", "kopfpeerings")


@pytest.mark.parametrize("routes", ["httproutes", "grpcroutes"])
def test_gateway_api_routes_only_when_enabled(render: Render, routes: str) -> None:
    (off,) = _roles(render())
    assert not _verbs(off, "gateway.networking.k8s.io", routes)
    (on,) = _roles(render(**{"gatewayAPI.enabled": "true"}))
    assert _verbs(on, "gateway.networking.k8s.io", routes) == {
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    }


Rule = tuple[str, str]
"""(API group, resource)."""
# Every mode a rule can appear in: cluster or namespaced, each with every opt-in rule.
EVERY_MODE = [{"gatewayAPI.enabled": "true"}, {**NAMESPACED, "gatewayAPI.enabled": "true"}]


ACTIVATOR_TABLE = "\nThe activator has its own ServiceAccount"


def _readme_rules(text: str, activator: bool = False) -> dict[Rule, set[str]]:
    """The chart README's RBAC table: (group, resource) -> verbs, one entry per resource;
    `activator`: the activator's table, after the operator's."""
    section = text.split("\n## RBAC\n", 1)[1].split("\n## ", 1)[0]
    before, _, after = section.partition(ACTIVATOR_TABLE)
    section = after if activator else before
    rules: dict[Rule, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue  # prose, the header or its underline
        group = cells[0].strip("`").strip('"')
        verbs = {v.strip() for v in cells[2].split(",")}
        for resource in re.findall(r"`([^`]+)`", cells[1]):
            assert (group, resource) not in rules, f"two README rows for {group}/{resource}"
            rules[(group, resource)] = verbs
    return rules


def _rendered_rules(render: Render, activator: bool = False) -> dict[Rule, set[str]]:
    """(group, resource) -> verbs over every role of every mode; a pair must get the same
    verbs wherever it is rendered, or one README row could not describe it."""
    rules: dict[Rule, set[str]] = {}
    for values in EVERY_MODE:
        docs = render(**values)
        # The leader-election Role too: its Lease rules are README rows like the others.
        operator_roles = (
            d for d in docs if d["kind"] in {"ClusterRole", "Role"} and _activator(d) is activator
        )
        for role in operator_roles:
            in_role: dict[Rule, set[str]] = {}
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        in_role.setdefault((group, resource), set()).update(rule["verbs"])
            for pair, verbs in in_role.items():
                seen = rules.setdefault(pair, verbs)
                assert seen == verbs, (pair, seen, verbs)
    return rules


def test_readme_rbac_table_lists_exactly_the_rendered_rules(render: Render) -> None:
    documented = _readme_rules(CHART_README.read_text())
    rendered = _rendered_rules(render)
    assert sorted(set(rendered) - set(documented)) == [], "rendered but not in the README"
    assert sorted(set(documented) - set(rendered)) == [], "in the README but not rendered"
    wrong = {k: (documented[k], rendered[k]) for k in rendered if documented[k] != rendered[k]}
    assert wrong == {}, "README verbs (first) differ from the rendered rule's (second)"


def test_readme_activator_table_lists_exactly_its_rendered_rules(render: Render) -> None:
    documented = _readme_rules(CHART_README.read_text(), activator=True)
    assert documented == _rendered_rules(render, activator=True)


def test_readme_table_check_catches_a_missing_row_and_a_wrong_verb(render: Render) -> None:
    """Guard against a check that cannot fail: the parser reads real rows."""
    text = CHART_README.read_text()
    documented = _readme_rules(text)
    assert documented[("batch", "jobs")] == {"list", "watch", "create", "patch", "delete"}
    assert documented[("", "configmaps")] == _rendered_rules(render)[("", "configmaps")]
    row = next(line for line in text.splitlines() if line.startswith("| `batch` | `jobs` |"))
    assert ("batch", "jobs") not in _readme_rules(text.replace(row + "\n", ""))
    widened = text.replace(row, row.replace("| list, watch,", "| get, list, watch,"))
    assert _readme_rules(widened)[("batch", "jobs")] != documented[("batch", "jobs")]


def test_endpointslice_writes_only_with_the_activator(render: Render) -> None:
    (on,) = _roles(render())
    assert _verbs(on, "discovery.k8s.io", "endpointslices") == {
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    }
    (off,) = _roles(render(**{"activator.enabled": "false"}))
    # Reading them stays: the retire pace watches the model Services' slices.
    assert _verbs(off, "discovery.k8s.io", "endpointslices") == {"list", "watch"}


def test_operator_rights_for_the_activator_in_its_namespace_when_namespaced(
    render: Render,
) -> None:
    docs = render(**NAMESPACED)
    (role,) = [
        d
        for d in docs
        if d["metadata"]["name"].endswith("-activator-routes") and d["kind"] == "Role"
    ]
    assert role["metadata"]["namespace"] == "kinfer-system"
    assert _verbs(role, "", "configmaps") == {"list", "watch", "create", "patch", "delete"}
    assert not _verbs(role, "", "secrets")
    # Cluster mode's ClusterRole already covers the operator's own namespace.
    assert not [d for d in render() if d["metadata"]["name"].endswith("-activator-routes")]


@pytest.mark.parametrize("values", [{}, NAMESPACED], ids=["cluster", "namespaced"])
def test_activator_may_only_discover_pods_and_scale_deployments(
    render: Render, values: dict[str, str]
) -> None:
    every = [d for d in render(**values) if d["kind"] in {"ClusterRole", "Role"} and _activator(d)]
    # The routing table: one ConfigMap by name, read only, in the release namespace.
    (table,) = [r for r in every if r["metadata"]["name"].endswith("-activator-table")]
    assert table["kind"] == "Role" and table["metadata"]["namespace"] == "kinfer-system"
    assert table["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["kinfer-activator-routes"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    roles = [r for r in every if r is not table]
    assert roles
    for role in roles:
        granted = {
            (group, resource): set(rule["verbs"])
            for rule in role["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
        }
        assert granted == {
            ("discovery.k8s.io", "endpointslices"): {"list", "watch"},
            ("apps", "deployments/scale"): {"get", "patch"},
        }
    if values:
        assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    else:
        assert [r["kind"] for r in roles] == ["ClusterRole"]
