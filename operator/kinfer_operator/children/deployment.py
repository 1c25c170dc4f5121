"""The runtime Deployment of one revision: GPU placement, hardened pods, probes and drain."""

from __future__ import annotations

import math
from typing import Any

from kinfer_operator import runtime_contract as rc
from kinfer_operator.children.shadow import shadow_config_name
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import (
    CACHE_KEY_ANNOTATION,
    MODEL_LABEL,
    MODEL_VERSION_ANNOTATION,
    REVISION_LABEL,
    TEMPLATE_HASH_ANNOTATION,
    TEMPLATE_MARK_ANNOTATION,
    TRACK_LABEL,
    Track,
    child_labels,
    deployment_name,
    object_hash,
    pod_labels,
    revision_of,
)

__all__ = [
    "PRESTOP_SLEEP_SECONDS",
    "build_deployment",
    "model_uri_in_pod",
    "placement",
    "shared_cache_dir",
    "source_env",
    "source_volumes",
]

PRESTOP_SLEEP_SECONDS = 5
"""Time for endpoints controllers and load balancers to stop routing to a terminating pod
before the runtime starts draining on SIGTERM."""

_PROBE_PERIOD_SECONDS = 5


def model_uri_in_pod(uri: str) -> str:
    """The URI the runtime sees: pvc://claim/path becomes a file under the read-only mount."""
    if uri.startswith("pvc://"):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        return f"file://{rc.PVC_MOUNT_ROOT}/{claim}/{path}"
    return uri


def source_env(model: InferenceModel) -> list[dict[str, Any]]:
    """How to reach the source: object-store endpoint and region, and credentials, always
    from the Secret (secretKeyRef), never copied into the pod spec."""
    source = model.spec.model
    env: list[dict[str, Any]] = []
    keys = source.object_store_keys
    if keys is not None:
        env.append({"name": rc.ENV_MODEL_REGION, "value": source.region})
        if source.endpoint:
            env.append({"name": rc.ENV_MODEL_ENDPOINT, "value": source.endpoint})
    if source.web_identity is not None:
        env += [
            {"name": rc.ENV_AWS_ROLE_ARN, "value": source.web_identity.role_arn},
            {"name": rc.ENV_AWS_WEB_IDENTITY_TOKEN_FILE, "value": _WEB_IDENTITY_TOKEN},
        ]
    ref = source.credentials
    if ref is None:
        return env
    if keys is not None:
        env.extend(
            {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": key}}}
            for name, key in zip(
                (rc.ENV_MODEL_ACCESS_KEY_ID, rc.ENV_MODEL_SECRET_ACCESS_KEY), keys, strict=True
            )
        )
    else:
        env.append(
            {
                "name": rc.ENV_MODEL_AUTH_HEADER,
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    return env


_WEB_IDENTITY_TOKEN = f"{rc.WEB_IDENTITY_TOKEN_DIR}/token"


def source_volumes(model: InferenceModel) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """spec.model.webIdentity's projected ServiceAccount token (for STS's audience only;
    the kubelet rotates it), as a volume and its read-only mount; nothing otherwise."""
    if model.spec.model.web_identity is None:
        return [], []
    token = {
        "audience": rc.WEB_IDENTITY_AUDIENCE,
        "expirationSeconds": rc.WEB_IDENTITY_TOKEN_SECONDS,
        "path": "token",
    }
    volume = {"name": "web-identity", "projected": {"sources": [{"serviceAccountToken": token}]}}
    mount = {"name": "web-identity", "mountPath": rc.WEB_IDENTITY_TOKEN_DIR, "readOnly": True}
    return [volume], [mount]


def shared_cache_dir(model: InferenceModel) -> str:
    """The model's own directory on the cache volume, as mounted in pods and the fill Job."""
    return f"{rc.SHARED_CACHE_DIR}/{model.name}"


def _pvc_claim(uri: str) -> str | None:
    if not uri.startswith("pvc://"):
        return None
    return uri.removeprefix("pvc://").partition("/")[0]


def _tracing_env(model: InferenceModel, otlp_endpoint: str) -> dict[str, str]:
    """OTEL_* for spec.runtime.tracing: the endpoint is the platform's (the operator's
    setting), never the tenant's; nothing without both."""
    tracing = model.spec.runtime.tracing
    if tracing is None or not otlp_endpoint:
        return {}
    return {
        rc.ENV_OTEL_TRACES_EXPORTER: "otlp",
        rc.ENV_OTEL_EXPORTER_OTLP_ENDPOINT: otlp_endpoint,
        rc.ENV_OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
        rc.ENV_OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
        rc.ENV_OTEL_TRACES_SAMPLER_ARG: repr(tracing.sampling_ratio),
        rc.ENV_OTEL_SERVICE_NAME: "kinfer-runtime",
        rc.ENV_OTEL_RESOURCE_ATTRIBUTES: (
            f"k8s.namespace.name={model.namespace},kinfer.model={model.name}"
        ),
    }


def _env(model: InferenceModel, revision: str, otlp_endpoint: str = "") -> list[dict[str, Any]]:
    spec = model.spec
    batching = spec.runtime.batching
    plain = {
        rc.ENV_MODEL_URI: model_uri_in_pod(spec.model.uri),
        rc.ENV_MODEL_NAME: model.name,
        rc.ENV_MODEL_VERSION: spec.model.version,
        rc.ENV_MODEL_FORMAT: spec.model.format,
        rc.ENV_MODEL_CACHE_DIR: rc.MODEL_CACHE_DIR,
        rc.ENV_PORT: str(rc.HTTP_PORT),
        rc.ENV_GRPC_PORT: str(rc.GRPC_PORT),
        rc.ENV_METRICS_PORT: str(rc.METRICS_PORT),
        rc.ENV_CLASSIFIED_PORT: str(rc.CLASSIFIED_PORT),
        rc.ENV_MAX_BATCH_SIZE: str(batching.max_batch_size),
        rc.ENV_MAX_QUEUE_DELAY_US: str(batching.max_queue_delay_microseconds),
        rc.ENV_MAX_QUEUE_SIZE: str(batching.max_queue_size),
        rc.ENV_PRIORITY_LEVELS: str(batching.priority_levels),
        rc.ENV_DEFAULT_PRIORITY: str(batching.default_priority_level),
        rc.ENV_DEVICE: "cuda" if spec.gpu_count else "cpu",
        rc.ENV_TORCH_DTYPE: spec.runtime.precision,
        rc.ENV_REVISION: revision,
        rc.ENV_SHADOW_CONFIG: f"{rc.SHADOW_CONFIG_DIR}/{rc.SHADOW_CONFIG_FILE}",
    }
    if spec.model.sha256:
        plain[rc.ENV_MODEL_SHA256] = spec.model.sha256
    if batching.lower_priority_max_batch_size is not None:
        # Only when set: a new variable in every template would restart every model's pods.
        plain[rc.ENV_LOWER_PRIORITY_MAX_BATCH_SIZE] = str(batching.lower_priority_max_batch_size)
    if spec.runtime.handler_threads is not None:
        plain[rc.ENV_HANDLER_THREADS] = str(spec.runtime.handler_threads)
    if spec.model.cache:
        plain[rc.ENV_SHARED_CACHE_DIR] = shared_cache_dir(model)
    grpc = spec.runtime.grpc
    if grpc.max_connection_age_seconds is not None:
        plain[rc.ENV_GRPC_MAX_CONNECTION_AGE_S] = str(grpc.max_connection_age_seconds)
    if grpc.max_connection_age_grace_seconds is not None:
        plain[rc.ENV_GRPC_MAX_CONNECTION_AGE_GRACE_S] = str(grpc.max_connection_age_grace_seconds)
    warmup = spec.rollout.analysis.warmup_seconds if spec.rollout is not None else 0
    if warmup:
        plain[rc.ENV_WARMUP_WINDOW_S] = str(warmup)
    if spec.runtime.response_cache is not None and spec.model.deterministic:
        plain[rc.ENV_RESPONSE_CACHE_BYTES] = str(spec.runtime.response_cache.max_bytes)
    plain.update(_tracing_env(model, otlp_endpoint))
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plain.items()]
    env.extend(source_env(model))
    env.extend({"name": e.name, "value": e.value} for e in spec.runtime.env)
    return env


def _resources(model: InferenceModel) -> dict[str, Any]:
    runtime = model.spec.runtime
    requests = {k: str(v) for k, v in runtime.resources.requests.items()}
    limits = {k: str(v) for k, v in runtime.resources.limits.items()}
    if runtime.gpu and runtime.gpu.count:
        # Extended resources are limits-only; Kubernetes copies them into requests.
        limits[runtime.gpu.resource_name] = str(runtime.gpu.count)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def pod_security_context() -> dict[str, Any]:
    """Every pod kinfer makes runs as the runtime's non-root user: PodSecurity "restricted"."""
    return {
        "runAsNonRoot": True,
        "runAsUser": rc.RUNTIME_UID,
        "runAsGroup": rc.RUNTIME_UID,
        "fsGroup": rc.RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """No privilege, no capability, a read-only root: PodSecurity "restricted"."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def placement(model: InferenceModel) -> dict[str, Any]:
    """Where the model's pods may run; the cache-fill Job goes to the same nodes."""
    spec = model.spec
    scheduling = spec.scheduling
    node_selector = dict(scheduling.node_selector)
    tolerations = [t.model_dump(by_alias=True, exclude_none=True) for t in scheduling.tolerations]
    gpu = spec.runtime.gpu
    if gpu and gpu.count:
        if gpu.product:
            node_selector[gpu.product_label] = gpu.product
        # GPU nodes carry a NoSchedule taint keyed by the resource name.
        tolerations.append({"key": gpu.resource_name, "operator": "Exists", "effect": "NoSchedule"})
    out: dict[str, Any] = {}
    if node_selector:
        out["nodeSelector"] = node_selector
    if tolerations:
        out["tolerations"] = tolerations
    if scheduling.affinity:
        out["affinity"] = scheduling.affinity
    if scheduling.priority_class_name:
        out["priorityClassName"] = scheduling.priority_class_name
    return out


def _probes(model: InferenceModel) -> dict[str, Any]:
    def http_get(path: str) -> dict[str, Any]:
        return {"path": path, "port": "http"}

    startup_budget = model.spec.runtime.startup_timeout_seconds
    return {
        # The startup probe holds liveness off while a large model downloads and warms up.
        "startupProbe": {
            "httpGet": http_get(rc.HEALTH_READY_PATH),
            "periodSeconds": _PROBE_PERIOD_SECONDS,
            "failureThreshold": math.ceil(startup_budget / _PROBE_PERIOD_SECONDS),
        },
        "readinessProbe": {
            "httpGet": http_get(rc.HEALTH_READY_PATH),
            "periodSeconds": _PROBE_PERIOD_SECONDS,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": http_get(rc.HEALTH_LIVE_PATH),
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
    }


def _volumes(model: InferenceModel) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    scratch = model.spec.runtime.scratch
    # readOnlyRootFilesystem: the only writable paths are these emptyDirs, each size-limited
    # (past its limit the kubelet evicts the pod instead of letting it fill the node).
    # The shadow ConfigMap is always mounted, and optional: mirroring turns on and off by
    # rewriting it, never by changing this template (which would restart stable's pods).
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": str(scratch.tmp)}},
        {"name": "model-cache", "emptyDir": {"sizeLimit": str(scratch.model_cache)}},
        {
            "name": "shadow",
            "configMap": {"name": shadow_config_name(model), "optional": True},
        },
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "model-cache", "mountPath": rc.MODEL_CACHE_DIR},
        {"name": "shadow", "mountPath": rc.SHADOW_CONFIG_DIR, "readOnly": True},
    ]
    claim = _pvc_claim(model.spec.model.uri)
    if claim:
        volumes.append(
            {"name": "model-pvc", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append(
            {"name": "model-pvc", "mountPath": f"{rc.PVC_MOUNT_ROOT}/{claim}", "readOnly": True}
        )
    cache = model.spec.model.cache
    if cache:
        # Read-only: only the fill Job writes, and verifies, what pods load from here.
        volumes.append(
            {
                "name": "model-shared-cache",
                "persistentVolumeClaim": {"claimName": cache.claim_name, "readOnly": True},
            }
        )
        mounts.append(
            {"name": "model-shared-cache", "mountPath": rc.SHARED_CACHE_DIR, "readOnly": True}
        )
    token_volumes, token_mounts = source_volumes(model)
    return volumes + token_volumes, mounts + token_mounts


def _container(
    model: InferenceModel, revision: str, mounts: list[dict[str, Any]], otlp_endpoint: str = ""
) -> dict[str, Any]:
    runtime = model.spec.runtime
    return {
        "name": "runtime",
        "image": runtime.image,
        "imagePullPolicy": runtime.image_pull_policy,
        "env": _env(model, revision, otlp_endpoint),
        "ports": [
            {"name": "http", "containerPort": rc.HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": rc.GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": rc.METRICS_PORT, "protocol": "TCP"},
            # Mirrored and pinned requests only (shadow and track Services); probes stay on http.
            {
                "name": rc.CLASSIFIED_PORT_NAME,
                "containerPort": rc.CLASSIFIED_PORT,
                "protocol": "TCP",
            },
        ],
        "resources": _resources(model),
        **_probes(model),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "securityContext": container_security_context(),
        # The runtime writes its load error to the termination log; the operator surfaces it.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }


def _annotations(model: InferenceModel) -> dict[str, str]:
    out = {MODEL_VERSION_ANNOTATION: model.spec.model.version}
    source = model.spec.model
    if source.cache is not None and source.sha256:
        # Which cached version this revision uses, so eviction can keep it.
        out[CACHE_KEY_ANNOTATION] = source.sha256[:32]
    return out


def build_deployment(
    model: InferenceModel, track: Track, template_mark: str = "", otlp_endpoint: str = ""
) -> dict[str, Any]:
    """The Deployment serving the model's current revision on the given track.

    `spec.replicas` is deliberately absent: the apply step never owns it, so an HPA can take
    it over without the operator fighting back (fixed replica counts go through the scale
    subresource instead). The pod template's digest is recorded on the Deployment, so a
    change of the operator's template can be told apart from others (reconcile/template_rolls).
    `template_mark` (tests only) is copied into the pod template to change it on demand.
    `otlp_endpoint` is the platform's OTLP collector (operator setting) for traced models.
    """
    revision = revision_of(model)
    runtime = model.spec.runtime
    volumes, mounts = _volumes(model)
    selector = {MODEL_LABEL: model.name, REVISION_LABEL: revision}
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": runtime.termination_grace_period_seconds
        + PRESTOP_SLEEP_SECONDS,
        "securityContext": pod_security_context(),
        "containers": [_container(model, revision, mounts, otlp_endpoint)],
        "volumes": volumes,
        **placement(model),
    }
    if runtime.service_account_name:
        pod_spec["serviceAccountName"] = runtime.service_account_name
    if runtime.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in runtime.image_pull_secrets]
    pod_annotations = {MODEL_VERSION_ANNOTATION: model.spec.model.version}
    if template_mark:
        pod_annotations[TEMPLATE_MARK_ANNOTATION] = template_mark
    template: dict[str, Any] = {
        "metadata": {"labels": pod_labels(model, revision), "annotations": pod_annotations},
        "spec": pod_spec,
    }
    annotations = {**_annotations(model), TEMPLATE_HASH_ANNOTATION: object_hash(template)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(model, revision),
            "namespace": model.namespace,
            "labels": {**child_labels(model), REVISION_LABEL: revision, TRACK_LABEL: track},
            "annotations": annotations,
            "ownerReferences": [model.owner_reference],
        },
        "spec": {
            "selector": {"matchLabels": selector},
            "revisionHistoryLimit": 1,
            # Past the startup budget (plus scheduling slack) the rollout counts as failed.
            "progressDeadlineSeconds": runtime.startup_timeout_seconds + 60,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": template,
        },
    }
