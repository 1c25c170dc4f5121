"""The chart's admission policy (charts/kinfer/files/policy/rules.yaml), evaluated with a CEL
interpreter against sample InferenceModels: each rule refuses what it should, naming itself,
the field and the limit, and admits what is within policy. No helm and no cluster needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kinfer_operator.api.spec import InferenceModelSpec
from support.admission_policy import Policy, pinned_kubernetes_minor
from support.factories import deep_merge, model_body

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "charts" / "kinfer" / "values.yaml"
RULES_FILE = yaml.safe_load((REPO / "charts/kinfer/files/policy/rules.yaml").read_text())
MODEL = Policy("model")
SCALE = Policy("scale")
IMAGE = "registry.example.com/kinfer/runtime:0.1.0"


def _configmap_value(value: Any) -> str:
    """A values.yaml default as templates/policy.yaml writes it into the ConfigMap."""
    if isinstance(value, list):
        return ",".join(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def params(**data: str) -> dict[str, Any]:
    """A policy ConfigMap: the chart's default data, an image prefix, then `data` on top."""
    defaults = yaml.safe_load(VALUES.read_text())["policy"]["params"]
    rendered = {key: _configmap_value(value) for key, value in defaults.items()}
    rendered["allowedImagePrefixes"] = "registry.example.com/kinfer/"
    return {"metadata": {"name": "kinfer-policy"}, "data": {**rendered, **data}}


def model(spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A model as admission sees it: after the API server applied the CRD's defaults."""
    body = model_body(spec)
    body["spec"] = InferenceModelSpec.model_validate(body["spec"]).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    return body


def only(messages: list[str], rule: str) -> str:
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"kinfer-policy/{rule}: "), messages
    return messages[0]


def test_a_model_within_policy_is_admitted() -> None:
    assert MODEL.admit(model(), params()) == []


def test_an_undefaulted_manifest_is_judged_the_same() -> None:
    raw = model_body({"replicas": None, "runtime": {"gpu": {"count": None}}})
    assert MODEL.admit(raw, params(maxGPUsPerModel="1")) == []
    assert MODEL.admit(raw, params(maxGPUsPerModel="0"))


def test_image_outside_the_allowed_prefixes_is_refused_naming_rule_field_and_prefixes() -> None:
    message = only(
        MODEL.admit(model({"runtime": {"image": "evil.example.com/miner:1"}}), params()),
        "image-prefix",
    )
    assert "spec.runtime.image evil.example.com/miner:1" in message
    assert "allowedImagePrefixes: registry.example.com/kinfer/" in message


def test_a_prefix_must_match_whole_path_segments() -> None:
    lookalike = model({"runtime": {"image": "registry.example.com/kinfer-evil/runtime:1"}})
    assert only(MODEL.admit(lookalike, params()), "image-prefix")


def test_any_of_several_prefixes_admits_and_star_admits_any_image() -> None:
    other = model({"runtime": {"image": "ghcr.io/team/runtime@sha256:" + "a" * 64}})
    assert MODEL.admit(other, params(allowedImagePrefixes="quay.io/x/, ghcr.io/team/")) == []
    assert MODEL.admit(other, params(allowedImagePrefixes="*")) == []


def test_no_prefixes_admit_no_image() -> None:
    message = only(MODEL.admit(model(), params(allowedImagePrefixes="")), "image-prefix")
    assert "allowedImagePrefixes: none" in message


def test_service_account_must_be_listed_unless_it_is_the_namespace_default() -> None:
    named = model({"runtime": {"serviceAccountName": "model-reader"}})
    message = only(MODEL.admit(named, params()), "service-account")
    assert "spec.runtime.serviceAccountName model-reader" in message
    assert "only the namespace default" in message
    assert MODEL.admit(named, params(allowedServiceAccounts="a, model-reader")) == []
    assert MODEL.admit(named, params(allowedServiceAccounts="*")) == []
    default = model({"runtime": {"serviceAccountName": "default"}})
    assert MODEL.admit(default, params()) == []


@pytest.mark.parametrize(
    ("spec", "gpus", "field"),
    [
        ({"replicas": 3, "runtime": {"gpu": {"count": 2}}}, 6, "spec.replicas 3"),
        (
            {"replicas": None, "autoscaling": {"minReplicas": 1, "maxReplicas": 5}},
            5,
            "spec.autoscaling.maxReplicas 5",
        ),
    ],
)
def test_gpus_per_model_counts_replicas_or_autoscaling_max(
    spec: dict[str, Any], gpus: int, field: str
) -> None:
    body = model(spec)
    assert MODEL.admit(body, params(maxGPUsPerModel=str(gpus))) == []
    message = only(MODEL.admit(body, params(maxGPUsPerModel=str(gpus - 1))), "gpus-per-model")
    assert field in message
    assert f"= {gpus} GPUs, more than maxGPUsPerModel {gpus - 1}" in message


def test_cpu_models_use_no_gpus() -> None:
    cpu = model({"replicas": 50, "runtime": {"gpu": None}})
    assert MODEL.admit(cpu, params(maxGPUsPerModel="0", allowedGPUResources="")) == []


def test_gpu_resource_outside_the_allowed_list_is_refused() -> None:
    mig = model({"runtime": {"gpu": {"resourceName": "nvidia.com/mig-1g.10gb"}}})
    message = only(MODEL.admit(mig, params()), "gpu-resource")
    assert "spec.runtime.gpu.resourceName nvidia.com/mig-1g.10gb" in message
    assert MODEL.admit(mig, params(allowedGPUResources="nvidia.com/mig-1g.10gb")) == []


def test_shadow_traffic_is_refused_unless_allowed() -> None:
    shadow = model({"rollout": {"canary": {"stepWeight": 25}, "shadow": {"percent": 5}}})
    assert MODEL.admit(shadow, params()) == []  # the chart's default allows it
    message = only(MODEL.admit(shadow, params(allowShadow="false")), "shadow")
    assert "spec.rollout.shadow is not allowed (allowShadow: false)" in message
    canary_only = model({"rollout": {"canary": {"stepWeight": 25}}})
    assert MODEL.admit(canary_only, params(allowShadow="false")) == []


def test_a_malformed_limit_refuses_naming_the_configmap_key() -> None:
    message = only(MODEL.admit(model(), params(maxGPUsPerModel="eight")), "params")
    assert "kinfer-policy must set maxGPUsPerModel to a whole number (got 'eight')" in message


def test_a_prefix_that_does_not_end_a_path_segment_is_a_params_error() -> None:
    messages = MODEL.admit(model(), params(allowedImagePrefixes="registry.example.com/kin"))
    assert any(m.startswith("kinfer-policy/params: ") for m in messages), messages


def test_an_empty_configmap_fails_closed() -> None:
    refused = MODEL.admit(model(), {"metadata": {"name": "kinfer-policy"}})
    rules = sorted(m.split(":")[0] for m in refused)
    assert rules == [
        "kinfer-policy/gpu-resource",
        "kinfer-policy/image-prefix",
        "kinfer-policy/params",  # no maxGPUsPerModel
    ]
    shadow = model({"rollout": {"canary": {"stepWeight": 25}, "shadow": {"percent": 5}}})
    assert "kinfer-policy/shadow" in {
        m.split(":")[0] for m in MODEL.admit(shadow, {"metadata": {"name": "p"}, "data": {}})
    }


def test_an_update_that_keeps_the_spec_is_not_judged_but_a_spec_change_is() -> None:
    over = model({"runtime": {"image": "evil.example.com/miner:1"}})
    relabelled = deep_merge(over, {"metadata": {"labels": {"team": "a"}}})
    assert MODEL.admit(relabelled, params(), old=over) == []
    scaled = deep_merge(over, {"spec": {"replicas": 3}})
    assert only(MODEL.admit(scaled, params(), old=over), "image-prefix")


def test_scale_subresource_may_scale_down_but_not_up() -> None:
    def scale(replicas: int) -> dict[str, Any]:
        return {"metadata": {"name": "resnet50"}, "spec": {"replicas": replicas}}

    assert SCALE.admit(scale(1), old=scale(2)) == []
    assert SCALE.admit(scale(2), old=scale(2)) == []
    message = only(SCALE.admit(scale(5), old=scale(2)), "scale-up")
    assert "resnet50 up to 5 replicas" in message and "spec.replicas" in message


def test_every_validation_names_its_rule_and_a_field() -> None:
    for policy in (MODEL, SCALE):
        for validation in policy.rules["validations"]:
            assert validation["messageExpression"].startswith("'kinfer-policy/")
            assert validation["reason"] in {"Forbidden", "Invalid"}
        assert policy.expressions()


def test_rules_are_valid_admission_policy_fields_for_the_pinned_kubernetes() -> None:
    # Fields the API server does not know (a CRD rule's fieldPath, say) would be refused.
    version = pinned_kubernetes_minor()
    for section in ("model", "scale"):
        policy = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": f"kinfer-policy-{section}"},
            "spec": dict(RULES_FILE[section]),
        }
        kubernetes_validate.validate(policy, version, strict=True)
