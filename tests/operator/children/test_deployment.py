"""build_deployment: GPU placement, pod security, probes, model sources, replicas ownership."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kinfer_operator import runtime_contract as rc
from kinfer_operator.children import build_deployment
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import (
    MODEL_LABEL,
    REVISION_LABEL,
    TEMPLATE_HASH_ANNOTATION,
    TEMPLATE_MARK_ANNOTATION,
    TRACK_LABEL,
    revision_of,
)
from pydantic import ValidationError

MakeModel = Callable[..., InferenceModel]


def _container(dep: dict[str, Any]) -> dict[str, Any]:
    return dict(dep["spec"]["template"]["spec"]["containers"][0])


def _env(dep: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(dep)["env"]}


def test_gpu_count_sets_limit_and_toleration(make_model: MakeModel) -> None:
    dep = build_deployment(make_model({"runtime": {"gpu": {"count": 2}}}), "stable")
    assert _container(dep)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    tolerations = dep["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_gpu_product_selects_nodes_by_product_label(make_model: MakeModel) -> None:
    dep = build_deployment(make_model(), "stable")
    selector = dep["spec"]["template"]["spec"]["nodeSelector"]
    assert selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_other_vendor_resource_name_is_used_for_limit_and_taint(make_model: MakeModel) -> None:
    model = make_model({"runtime": {"gpu": {"resourceName": "amd.com/gpu", "product": None}}})
    dep = build_deployment(model, "stable")
    assert "amd.com/gpu" in _container(dep)["resources"]["limits"]
    assert dep["spec"]["template"]["spec"]["tolerations"][0]["key"] == "amd.com/gpu"
    assert "nodeSelector" not in dep["spec"]["template"]["spec"]


def test_cpu_only_model_has_no_gpu_limit_or_toleration(make_model: MakeModel) -> None:
    dep = build_deployment(make_model({"runtime": {"gpu": {"count": 0}}}), "stable")
    pod = dep["spec"]["template"]["spec"]
    assert "limits" not in _container(dep)["resources"]
    assert "tolerations" not in pod and "nodeSelector" not in pod
    assert _env(dep)[rc.ENV_DEVICE] == "cpu"


def test_user_scheduling_passes_through_next_to_gpu_placement(make_model: MakeModel) -> None:
    affinity = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    model = make_model(
        {
            "scheduling": {
                "nodeSelector": {"pool": "inference"},
                "tolerations": [{"key": "spot", "operator": "Exists"}],
                "affinity": affinity,
                "priorityClassName": "serving-high",
            }
        }
    )
    pod = build_deployment(model, "stable")["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["pool"] == "inference"
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert {"key": "spot", "operator": "Exists"} in pod["tolerations"]
    assert pod["affinity"] == affinity
    assert pod["priorityClassName"] == "serving-high"


def test_pod_meets_restricted_pod_security(make_model: MakeModel) -> None:
    dep = build_deployment(make_model(), "stable")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = _container(dep)["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False


def test_startup_probe_budget_follows_startup_timeout(make_model: MakeModel) -> None:
    dep = build_deployment(make_model({"runtime": {"startupTimeoutSeconds": 1200}}), "stable")
    probe = _container(dep)["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 1200
    assert probe["httpGet"]["path"] == rc.HEALTH_READY_PATH
    assert _container(dep)["livenessProbe"]["httpGet"]["path"] == rc.HEALTH_LIVE_PATH
    assert dep["spec"]["progressDeadlineSeconds"] > 1200


def test_graceful_drain_has_prestop_and_grace_period(make_model: MakeModel) -> None:
    dep = build_deployment(make_model({"runtime": {"terminationGracePeriodSeconds": 90}}), "s")
    assert _container(dep)["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 90


def test_every_empty_dir_has_a_size_limit_with_defaults(make_model: MakeModel) -> None:
    pod = build_deployment(make_model(), "s")["spec"]["template"]["spec"]
    empty = {v["name"]: v["emptyDir"] for v in pod["volumes"] if "emptyDir" in v}
    assert empty == {"tmp": {"sizeLimit": "1Gi"}, "model-cache": {"sizeLimit": "50Gi"}}


def test_scratch_size_limits_come_from_the_spec(make_model: MakeModel) -> None:
    model = make_model({"runtime": {"scratch": {"tmp": "256Mi", "modelCache": "200Gi"}}})
    pod = build_deployment(model, "s")["spec"]["template"]["spec"]
    empty = {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if "emptyDir" in v}
    assert empty == {"tmp": "256Mi", "model-cache": "200Gi"}


@pytest.mark.parametrize(
    ("scratch", "field"), [({"tmp": "65Gi"}, "tmp"), ({"modelCache": "5Ti"}, "modelCache")]
)
def test_scratch_size_limits_are_bounded(
    make_model: MakeModel, scratch: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError, match=rf"scratch.{field}\n.*must be at most"):
        make_model({"runtime": {"scratch": scratch}})


def test_pvc_uri_mounts_claim_read_only_and_points_runtime_at_file(
    make_model: MakeModel,
) -> None:
    dep = build_deployment(make_model({"model": {"uri": "pvc://models/resnet/v3.onnx"}}), "s")
    pod = dep["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    mount = next(m for m in _container(dep)["volumeMounts"] if m["name"] == claim["name"])
    assert mount["readOnly"] is True
    assert _env(dep)[rc.ENV_MODEL_URI] == f"file://{rc.PVC_MOUNT_ROOT}/models/resnet/v3.onnx"


def test_http_credentials_come_from_secret_reference(make_model: MakeModel) -> None:
    dep = build_deployment(make_model({"model": {"credentials": {"name": "hub-token"}}}), "s")
    ref = _env(dep)[rc.ENV_MODEL_AUTH_HEADER]
    assert ref == {"secretKeyRef": {"name": "hub-token", "key": "authorization"}}


def test_batching_and_model_settings_reach_runtime_env(make_model: MakeModel) -> None:
    model = make_model(
        {"runtime": {"batching": {"maxBatchSize": 8, "maxQueueDelayMicroseconds": 500}}}
    )
    env = _env(build_deployment(model, "stable"))
    assert env[rc.ENV_MAX_BATCH_SIZE] == "8"
    assert env[rc.ENV_MAX_QUEUE_DELAY_US] == "500"
    assert env[rc.ENV_MODEL_NAME] == "resnet50"
    assert env[rc.ENV_REVISION] == revision_of(model)


def test_replicas_are_never_in_the_applied_deployment(make_model: MakeModel) -> None:
    assert "replicas" not in build_deployment(make_model(), "stable")["spec"]


def test_name_selector_and_labels_carry_revision_and_track(make_model: MakeModel) -> None:
    model = make_model()
    revision = revision_of(model)
    dep = build_deployment(model, "canary")
    assert dep["metadata"]["name"] == f"resnet50-{revision}"
    assert dep["metadata"]["labels"][TRACK_LABEL] == "canary"
    assert dep["spec"]["selector"]["matchLabels"] == {
        MODEL_LABEL: "resnet50",
        REVISION_LABEL: revision,
    }
    assert TRACK_LABEL not in dep["spec"]["template"]["metadata"]["labels"]
    assert dep["metadata"]["ownerReferences"][0]["controller"] is True


def test_children_avoid_argo_cd_tracking_label(make_model: MakeModel) -> None:
    dep = build_deployment(make_model(), "stable")
    for labels in (dep["metadata"]["labels"], dep["spec"]["template"]["metadata"]["labels"]):
        assert "app.kubernetes.io/instance" not in labels
        assert labels["app.kubernetes.io/managed-by"] == "kinfer"


def test_runtime_serves_grpc_and_classified_on_named_ports_and_probes_stay_on_http(
    make_model: MakeModel,
) -> None:
    dep = build_deployment(make_model(), "stable")
    container = _container(dep)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "http": rc.HTTP_PORT,
        "grpc": rc.GRPC_PORT,
        "metrics": rc.METRICS_PORT,
        "classified": rc.CLASSIFIED_PORT,
    }
    assert _env(dep)[rc.ENV_GRPC_PORT] == str(rc.GRPC_PORT)
    assert _env(dep)[rc.ENV_CLASSIFIED_PORT] == str(rc.CLASSIFIED_PORT)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"


def test_priority_levels_reach_runtime_env(make_model: MakeModel) -> None:
    model = make_model({"runtime": {"batching": {"priorityLevels": 3, "defaultPriorityLevel": 2}}})
    env = _env(build_deployment(model, "stable"))
    assert (env[rc.ENV_PRIORITY_LEVELS], env[rc.ENV_DEFAULT_PRIORITY]) == ("3", "2")


def test_lower_priority_cap_reaches_runtime_env_only_when_set(make_model: MakeModel) -> None:
    unset = _env(build_deployment(make_model(), "stable"))
    assert rc.ENV_LOWER_PRIORITY_MAX_BATCH_SIZE not in unset
    model = make_model({"runtime": {"batching": {"lowerPriorityMaxBatchSize": 4}}})
    env = _env(build_deployment(model, "stable"))
    assert env[rc.ENV_LOWER_PRIORITY_MAX_BATCH_SIZE] == "4"


def test_grpc_connection_age_reaches_runtime_env_only_when_set(make_model: MakeModel) -> None:
    unset = _env(build_deployment(make_model(), "stable"))
    assert rc.ENV_GRPC_MAX_CONNECTION_AGE_S not in unset
    assert rc.ENV_GRPC_MAX_CONNECTION_AGE_GRACE_S not in unset
    grpc = {"maxConnectionAgeSeconds": 60, "maxConnectionAgeGraceSeconds": 10}
    env = _env(build_deployment(make_model({"runtime": {"grpc": grpc}}), "stable"))
    assert env[rc.ENV_GRPC_MAX_CONNECTION_AGE_S] == "60"
    assert env[rc.ENV_GRPC_MAX_CONNECTION_AGE_GRACE_S] == "10"


@pytest.mark.parametrize(
    "grpc",
    [
        {"maxConnectionAgeSeconds": 0},
        {"maxConnectionAgeSeconds": 86401},
        {"maxConnectionAgeGraceSeconds": -1},
    ],
)
def test_grpc_connection_age_is_bounded(make_model: MakeModel, grpc: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        make_model({"runtime": {"grpc": grpc}})


def test_analysis_warmup_reaches_runtime_env_only_when_set(make_model: MakeModel) -> None:
    canary = {"canary": {"steps": [{"weight": 50}]}}
    plain = make_model({"rollout": canary})
    assert rc.ENV_WARMUP_WINDOW_S not in _env(build_deployment(plain, "stable"))
    warm = make_model({"rollout": {**canary, "analysis": {"warmupSeconds": 15}}})
    assert _env(build_deployment(warm, "canary"))[rc.ENV_WARMUP_WINDOW_S] == "15"
    # A rollout setting: not part of the revision, like every other one.
    assert revision_of(warm) == revision_of(plain)
    with pytest.raises(ValidationError):
        make_model({"rollout": {**canary, "analysis": {"warmupSeconds": 3601}}})


def test_handler_threads_reach_runtime_env_only_when_set(make_model: MakeModel) -> None:
    assert rc.ENV_HANDLER_THREADS not in _env(build_deployment(make_model(), "stable"))
    model = make_model({"runtime": {"handlerThreads": 8}})
    assert _env(build_deployment(model, "stable"))[rc.ENV_HANDLER_THREADS] == "8"


def test_the_pod_template_digest_follows_the_template_and_the_test_mark(
    make_model: MakeModel,
) -> None:
    plain = build_deployment(make_model(), "stable")
    again = build_deployment(make_model(), "canary")  # the track is not in the template
    marked = build_deployment(make_model(), "stable", template_mark="upgrade-1")
    digest = plain["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    assert again["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] == digest
    assert marked["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] != digest
    assert marked["spec"]["template"]["metadata"]["annotations"][TEMPLATE_MARK_ANNOTATION] == (
        "upgrade-1"
    )
    assert TEMPLATE_MARK_ANNOTATION not in plain["spec"]["template"]["metadata"]["annotations"]


def test_response_cache_reaches_the_runtime_only_for_a_deterministic_model(
    make_model: MakeModel,
) -> None:
    cached = make_model(
        {"model": {"deterministic": True}, "runtime": {"responseCache": {"maxBytes": 1 << 26}}}
    )
    assert _env(build_deployment(cached, "stable"))[rc.ENV_RESPONSE_CACHE_BYTES] == str(1 << 26)
    assert rc.ENV_RESPONSE_CACHE_BYTES not in _env(build_deployment(make_model(), "stable"))
    with pytest.raises(ValidationError, match="deterministic"):
        make_model({"runtime": {"responseCache": {"maxBytes": 1 << 26}}})
    with pytest.raises(ValidationError):
        make_model(
            {"model": {"deterministic": True}, "runtime": {"responseCache": {"maxBytes": 1}}}
        )


def test_tracing_exports_only_to_the_platform_endpoint_with_the_models_sampling(
    make_model: MakeModel,
) -> None:
    traced = make_model({"runtime": {"tracing": {"samplingRatio": 0.25}}})
    env = _env(build_deployment(traced, "stable", otlp_endpoint="http://collector:4317"))
    assert env[rc.ENV_OTEL_TRACES_EXPORTER] == "otlp"
    assert env[rc.ENV_OTEL_EXPORTER_OTLP_ENDPOINT] == "http://collector:4317"
    assert env[rc.ENV_OTEL_TRACES_SAMPLER] == "parentbased_traceidratio"
    assert env[rc.ENV_OTEL_TRACES_SAMPLER_ARG] == "0.25"
    assert f"kinfer.model={traced.name}" in env[rc.ENV_OTEL_RESOURCE_ATTRIBUTES]
    # No platform endpoint, or a model without tracing: no OTEL_* at all (tracing off).
    for dep in (
        build_deployment(traced, "stable"),
        build_deployment(make_model(), "stable", otlp_endpoint="http://collector:4317"),
    ):
        assert not [name for name in _env(dep) if name.startswith("OTEL_")]


@pytest.mark.parametrize(
    "name", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_X"]
)
def test_a_tenant_cannot_set_otel_variables(make_model: MakeModel, name: str) -> None:
    with pytest.raises(ValidationError, match="set by the operator"):
        make_model({"runtime": {"env": [{"name": name, "value": "http://evil:4317"}]}})
