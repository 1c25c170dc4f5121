"""The chart's opt-in admission policy as helm renders it: off by default; on, a policy and
binding whose CEL is rules.yaml's, a params ConfigMap with the values' limits, per-namespace
params and GPU quotas when asked, and clear errors for unusable values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from support.admission_policy import pinned_kubernetes_minor

Render = Callable[..., list[dict[str, Any]]]
RULES = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "charts/kinfer/files/policy/rules.yaml").read_text()
)
ON = {"policy.enabled": "true", "policy.params.allowedImagePrefixes": "{registry.example.com/ml/}"}


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in _kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def test_policy_is_off_by_default(render: Render) -> None:
    docs = render()
    assert not _kind(docs, "ValidatingAdmissionPolicy")
    assert not _kind(docs, "ValidatingAdmissionPolicyBinding")
    assert not _kind(docs, "ResourceQuota")


def test_policy_renders_the_rules_file_on_inferencemodels(render: Render) -> None:
    docs = render(**ON)
    policy = _named(docs, "ValidatingAdmissionPolicy", "kinfer-policy")["spec"]
    assert policy["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}
    assert policy["failurePolicy"] == "Fail"
    (rule,) = policy["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == ["serving.kinfer.io"] and rule["resources"] == ["inferencemodels"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    assert policy["validations"] == RULES["model"]["validations"]
    assert policy["variables"] == RULES["model"]["variables"]
    assert policy["matchConditions"] == RULES["model"]["matchConditions"]
    scale = _named(docs, "ValidatingAdmissionPolicy", "kinfer-policy-scale")["spec"]
    assert scale["matchConstraints"]["resourceRules"][0]["resources"] == ["inferencemodels/scale"]
    assert scale["validations"] == RULES["scale"]["validations"]


def test_binding_reads_the_release_namespace_configmap_and_denies(render: Render) -> None:
    docs = render(**ON)
    binding = _named(docs, "ValidatingAdmissionPolicyBinding", "kinfer-policy")["spec"]
    assert binding["policyName"] == "kinfer-policy"
    assert binding["validationActions"] == ["Deny"]
    assert binding["paramRef"] == {
        "name": "kinfer-policy",
        "namespace": "kinfer-system",
        "parameterNotFoundAction": "Deny",
    }
    assert binding["matchResources"] == {"namespaceSelector": {}}
    params = _named(docs, "ConfigMap", "kinfer-policy")
    assert params["metadata"]["namespace"] == "kinfer-system"
    assert params["data"] == {
        "allowedImagePrefixes": "registry.example.com/ml/",
        "allowedServiceAccounts": "",
        "allowedGPUResources": "nvidia.com/gpu",
        "maxGPUsPerModel": "8",
        "allowShadow": "true",
    }


def test_values_reach_the_params_and_the_binding(render: Render) -> None:
    docs = render(
        **ON,
        **{
            "policy.params.allowedServiceAccounts": "{reader,writer}",
            "policy.params.maxGPUsPerModel": "4",
            "policy.params.allowShadow": "false",
            "policy.validationActions": "{Warn,Audit}",
            "policy.namespaceSelector.matchLabels.tenant": "team-a",
        },
    )
    data = _named(docs, "ConfigMap", "kinfer-policy")["data"]
    assert data["allowedServiceAccounts"] == "reader,writer"
    assert (data["maxGPUsPerModel"], data["allowShadow"]) == ("4", "false")
    for name in ("kinfer-policy", "kinfer-policy-scale"):
        binding = _named(docs, "ValidatingAdmissionPolicyBinding", name)["spec"]
        assert binding["validationActions"] == ["Warn", "Audit"]
        assert binding["matchResources"]["namespaceSelector"] == {
            "matchLabels": {"tenant": "team-a"}
        }


def test_per_namespace_params_are_looked_up_in_the_model_namespace(render: Render) -> None:
    docs = render(
        **ON,
        **{
            "policy.perNamespaceParams": "true",
            "policy.paramNamespaces": "{team-a,team-b}",
            "policy.parameterNotFoundAction": "Allow",
        },
    )
    binding = _named(docs, "ValidatingAdmissionPolicyBinding", "kinfer-policy")["spec"]
    assert binding["paramRef"] == {"name": "kinfer-policy", "parameterNotFoundAction": "Allow"}
    namespaces = sorted(
        d["metadata"]["namespace"]
        for d in _kind(docs, "ConfigMap")
        if d["metadata"]["name"] == "kinfer-policy"
    )
    assert namespaces == ["team-a", "team-b"]


def test_namespace_gpu_maximum_is_a_resource_quota_per_namespace(render: Render) -> None:
    docs = render(**ON, **{"policy.namespaceGPUQuota.team-a": "16"})
    (quota,) = _kind(docs, "ResourceQuota")
    assert quota["metadata"]["namespace"] == "team-a"
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "16"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"policy.enabled": "true"}, "policy.params.allowedImagePrefixes"),
        ({**ON, "policy.params.allowedImagePrefixes": "{registry.example.com/ml}"}, "pattern"),
        ({**ON, "policy.params.maxGPUsPerModel": "-1"}, "maxGPUsPerModel"),
        ({**ON, "policy.parameterNotFoundAction": "Ignore"}, "parameterNotFoundAction"),
        ({**ON, "policy.validationActions": "{Block}"}, "validationActions"),
        ({**ON, "policy.validationActions": "{Deny,Warn}"}, "validationActions"),
    ],
)
def test_unusable_policy_values_fail_rendering_naming_the_value(
    render_error: Callable[..., str], values: dict[str, str], message: str
) -> None:
    assert message in render_error(**values)


@pytest.mark.parametrize(
    "values",
    [
        {**ON, "policy.namespaceGPUQuota.team-a": "16"},
        {**ON, "policy.perNamespaceParams": "true", "policy.paramNamespaces": "{team-a}"},
    ],
    ids=["central-params", "per-namespace-params"],
)
def test_every_policy_object_is_valid_for_the_pinned_kubernetes(
    render: Render, values: dict[str, str]
) -> None:
    version = pinned_kubernetes_minor()
    kinds = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ResourceQuota"}
    policy_docs = [
        d
        for d in render(**values)
        if d["kind"] in kinds or d["metadata"]["name"].endswith("-policy")
    ]
    assert len(policy_docs) >= 5
    for doc in policy_docs:
        kubernetes_validate.validate(doc, version, strict=True)
