"""The operator's workload: restricted pod security, probes, ports, leader election, bad values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from kinfer_operator.rollout.endpoints import PrometheusConfig

Render = Callable[..., list[dict[str, Any]]]


def _operator(doc: dict[str, Any]) -> bool:
    """Not the activator's objects (tested in test_chart_activator.py)."""
    labels = doc["metadata"].get("labels") or {}
    return labels.get("app.kubernetes.io/component") != "activator"


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and _operator(d)]
    return found


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(_one(docs, "Deployment")["spec"]["template"]["spec"])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_pod_meets_the_restricted_pod_security_standard(render: Render) -> None:
    pod = _pod(render())
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    ctx = container["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    # The read-only root needs a writable /tmp, and nothing else.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert [v["name"] for v in pod["volumes"] if "emptyDir" in v] == ["tmp"]


def test_probes_hit_kopf_healthz_and_metrics_port_is_named(render: Render) -> None:
    (container,) = _pod(render())["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    env = _env(container)
    assert (env["KINFER_HEALTH_PORT"], env["KINFER_METRICS_PORT"]) == ("8080", "8081")


def test_prometheus_url_reaches_the_operator_for_canary_analysis(render: Render) -> None:
    (container,) = _pod(render(**{"operator.prometheusURL": "http://prom:9090"}))["containers"]
    assert _env(container)["KINFER_PROMETHEUS_URL"] == "http://prom:9090"


def test_a_template_mark_reaches_the_operator_only_when_set(render: Render) -> None:
    (plain,) = _pod(render())["containers"]
    assert "KINFER_TEMPLATE_MARK" not in _env(plain)
    (marked,) = _pod(render(**{"operator.templateMark": "upgrade-1"}))["containers"]
    assert _env(marked)["KINFER_TEMPLATE_MARK"] == "upgrade-1"


def test_image_defaults_to_the_chart_app_version(render: Render) -> None:
    (container,) = _pod(render())["containers"]
    assert container["image"] == "kinfer/operator:0.1.0"
    (tagged,) = _pod(render(**{"image.tag": "dev"}))["containers"]
    assert tagged["image"] == "kinfer/operator:dev"


def test_two_replicas_elect_one_through_a_lease_in_the_release_namespace(render: Render) -> None:
    docs = render()
    workload = _one(docs, "Deployment")
    assert workload["spec"]["replicas"] == 2
    env = _env(workload["spec"]["template"]["spec"]["containers"][0])
    assert env["KINFER_LEADER_ELECTION"] == "kinfer"
    assert env["KINFER_LEADER_ELECTION_NAMESPACE"] == "kinfer-system"
    assert [
        env[f"KINFER_LEADER_ELECTION_{k}"]
        for k in ("LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD")
    ] == ["15", "10", "2"]
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert not [d for d in docs if "KopfPeering" in d["kind"]]
    assert not [d for d in docs if "helm.sh/hook" in (d["metadata"].get("annotations") or {})]


def test_standalone_mode_sets_no_leader_election(render: Render) -> None:
    docs = render(**{"leaderElection.enabled": "false", "replicas": "1"})
    env = _env(_pod(docs)["containers"][0])
    assert not [k for k in env if k.startswith("KINFER_LEADER_ELECTION")]
    assert not [d for d in docs if d["metadata"]["name"].endswith("-leader-election")]


def test_monitoring_objects_only_when_enabled(render: Render) -> None:
    kinds = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not [d for d in render() if d["kind"] in kinds]
    enabled = render(
        **{
            f"monitoring.{k}.enabled": "true"
            for k in ("serviceMonitor", "podMonitor", "prometheusRule")
        }
    )
    pod_monitor = _one(enabled, "PodMonitor")
    assert pod_monitor["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/managed-by": "kinfer"}
    }
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert _one(enabled, "ServiceMonitor")["spec"]["endpoints"][0]["honorLabels"] is True


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": "two"}, "/replicas"),
        ({"operator.logFormat": "xml"}, "/operator/logFormat"),
        ({"watchNamespaces": "{Team_A}"}, "/watchNamespaces/0"),
        ({"crds.instal": "true"}, "instal"),
        ({"image.pullPolicy": "Sometimes"}, "/image/pullPolicy"),
        ({"monitoring.prometheusRule.gpuUnschedulableFor": "soon"}, "gpuUnschedulableFor"),
        ({"replicas": "2", "leaderElection.enabled": "false"}, "needs leaderElection.enabled"),
        ({"leaderElection.renewDeadline": "15"}, "retryPeriod < renewDeadline < leaseDuration"),
        ({"leaderElection.retryPeriod": "0"}, "/leaderElection/retryPeriod"),
        ({"leaderElection.name": "x"}, "name"),
        ({"operator.prometheusURL": "prometheus:9090"}, "/operator/prometheusURL"),
        ({"operator.templateMark": "x" * 64}, "/operator/templateMark"),
    ],
)
def test_wrong_values_fail_rendering_with_a_message(
    render_error: Callable[..., str], values: dict[str, str], message: str
) -> None:
    assert message in render_error(**values)


THANOS = {
    "prometheus.endpoints.thanos.url": "https://thanos:10902",
    "prometheus.endpoints.thanos.bearerTokenFile": "/etc/kinfer/secrets/thanos/token",
    "prometheus.endpoints.thanos.caFile": "/etc/kinfer/secrets/thanos/ca.crt",
    "prometheus.secretMounts[0].secret": "thanos-auth",
    "prometheus.secretMounts[0].mountPath": "/etc/kinfer/secrets/thanos",
    "prometheus.url": "http://prom:9090",
}


def test_prometheus_endpoints_become_a_mounted_operator_config(render: Render) -> None:
    docs = render(**THANOS)
    config = yaml.safe_load(_one(docs, "ConfigMap")["data"]["prometheus.yaml"])
    assert config == {
        "url": "http://prom:9090",
        "endpoints": {
            "thanos": {
                "url": "https://thanos:10902",
                "bearerTokenFile": "/etc/kinfer/secrets/thanos/token",
                "caFile": "/etc/kinfer/secrets/thanos/ca.crt",
            }
        },
    }
    PrometheusConfig.model_validate(config)  # what the operator loads at start
    pod = _pod(docs)
    (container,) = pod["containers"]
    assert _env(container)["KINFER_PROMETHEUS_CONFIG"] == "/etc/kinfer/prometheus/prometheus.yaml"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/kinfer/prometheus"]["readOnly"] is True
    assert mounts["/etc/kinfer/secrets/thanos"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["prometheus-secret-0"]["secret"] == {"secretName": "thanos-auth"}
    annotations = _one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/prometheus"]


def test_without_prometheus_endpoints_nothing_is_mounted(render: Render) -> None:
    docs = render()
    assert [d for d in docs if d["kind"] == "ConfigMap"] == []
    (container,) = _pod(docs)["containers"]
    assert "KINFER_PROMETHEUS_CONFIG" not in _env(container)
    assert _env(container)["KINFER_ANALYSIS_BUDGET_SECONDS"] == "10"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"prometheus.endpoints.Bad_Name.url": "http://x"}, "Bad_Name"),
        ({"prometheus.endpoints.thanos.url": "thanos:10902"}, "/prometheus/endpoints/thanos/url"),
        ({"prometheus.endpoints.thanos.headers": "x"}, "headers"),
        ({"prometheus.url": "file:///etc/passwd"}, "/prometheus/url"),
    ],
)
def test_wrong_prometheus_values_fail_rendering(
    render_error: Callable[..., str], values: dict[str, str], message: str
) -> None:
    assert message in render_error(**values)


def test_tracing_sets_the_operators_otel_variables_and_the_runtimes_endpoint(
    render: Render,
) -> None:
    (plain,) = _pod(render())["containers"]
    assert not [n for n in _env(plain) if n.startswith("OTEL_") or "OTLP" in n]
    (on,) = _pod(
        render(**{"tracing.enabled": "true", "tracing.otlpEndpoint": "http://otel.obs:4317"})
    )["containers"]
    env = _env(on)
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel.obs:4317"
    assert env["KINFER_RUNTIME_OTLP_ENDPOINT"] == "http://otel.obs:4317"
    (no_endpoint,) = _pod(render(**{"tracing.enabled": "true"}))["containers"]
    assert "OTEL_TRACES_EXPORTER" not in _env(no_endpoint)


def test_a_tracing_endpoint_must_be_a_plain_http_url(render_error: Callable[..., str]) -> None:
    assert "otlpEndpoint" in render_error(**{"tracing.otlpEndpoint": "otel:4317 --x"})
