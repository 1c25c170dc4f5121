"""The Job that fills the model cache: one per model version (uri + sha256), before pods start.

Like NIM's NIMCache, the cache is a PersistentVolumeClaim filled by a caching Job; unlike
KServe's LocalModelCache it is part of the InferenceModel itself (so every model kind and every
node group the model's placement allows gets it), and it keys versions by content, so a
GitOps revert finds its older version still cached.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from kubernetes.utils.quantity import parse_quantity

from kinfer_operator import runtime_contract as rc
from kinfer_operator.children.deployment import (
    container_security_context,
    placement,
    pod_security_context,
    shared_cache_dir,
    source_env,
    source_volumes,
)
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import CACHE_KEY_ANNOTATION, MODEL_VERSION_ANNOTATION, child_labels

__all__ = [
    "CACHE_KEY_LABEL",
    "FILL_LIMITS",
    "FILL_REQUESTS",
    "build_fill_job",
    "cache_key",
    "fill_job_name",
    "fill_resources",
]

CACHE_KEY_LABEL = CACHE_KEY_ANNOTATION
_FILL_ATTEMPTS = 3
# The fill streams the download to the volume: little CPU and memory. Requests and limits
# both, so that a namespace whose ResourceQuota requires them admits the Job.
FILL_REQUESTS: Final = {"cpu": "100m", "memory": "256Mi"}
FILL_LIMITS: Final = {"cpu": "1", "memory": "1Gi"}


def fill_resources(model: InferenceModel) -> dict[str, dict[str, str]]:
    """The fill container's resources: the spec's, each resource not given at its default.

    A request raised above its default limit (and no limit given) takes the limit with it,
    so that no request ends up above its limit.
    """
    cache = model.spec.model.cache
    given = cache.fill_resources if cache else None
    requests = dict(FILL_REQUESTS)
    limits = dict(FILL_LIMITS)
    if given is not None:
        requests.update({k: str(v) for k, v in given.requests.items()})
        limits.update({k: str(v) for k, v in given.limits.items()})
        for name, value in given.requests.items():
            if name not in given.limits and name in limits and _above(value, limits[name]):
                limits[name] = str(value)
    return {"requests": requests, "limits": limits}


def _above(value: int | str, other: int | str) -> bool:
    return bool(parse_quantity(value) > parse_quantity(other))  # type: ignore[no-untyped-call]


def cache_key(sha256: str) -> str:
    """The version's directory on the cache volume: what the runtime's cache layout uses
    (and the Deployment's CACHE_KEY_ANNOTATION)."""
    return sha256.lower()[:32]


def fill_job_name(model: InferenceModel, key: str) -> str:
    """Deterministic per version, so a pass finds the Job of a version it filled before."""
    return f"{model.name}-cache-{key[:10]}"


def build_fill_job(model: InferenceModel, keep: Collection[str]) -> dict[str, Any]:
    """The Job caching the model's current version; `keep` are the cache keys of live
    revisions, which its eviction must not delete.

    The Job is created once and never updated (a Job's template is immutable): `keep` is
    what was live when it was created, which includes every revision that can serve.
    """
    source = model.spec.model
    cache = source.cache
    assert cache is not None and source.sha256 is not None, "guarded by the CRD's CEL rule"
    key = cache_key(source.sha256)
    env: list[dict[str, Any]] = [
        {"name": rc.ENV_MODEL_URI, "value": source.uri},
        {"name": rc.ENV_MODEL_SHA256, "value": source.sha256},
        {"name": rc.ENV_SHARED_CACHE_DIR, "value": shared_cache_dir(model)},
        {"name": rc.ENV_CACHE_KEEP, "value": ",".join(sorted({*keep, key}))},
    ]
    if cache.max_size is not None:
        max_bytes = int(parse_quantity(cache.max_size))  # type: ignore[no-untyped-call]
        env.append({"name": rc.ENV_CACHE_MAX_BYTES, "value": str(max_bytes)})
    env.extend(source_env(model))
    labels = {**child_labels(model), CACHE_KEY_LABEL: key}
    runtime = model.spec.runtime
    token_volumes, token_mounts = source_volumes(model)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [
            {
                "name": "fill",
                "image": runtime.image,
                "imagePullPolicy": runtime.image_pull_policy,
                "command": list(rc.FILL_COMMAND),
                "env": env,
                "resources": fill_resources(model),
                "securityContext": container_security_context(),
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "model-shared-cache", "mountPath": rc.SHARED_CACHE_DIR},
                    *token_mounts,
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": str(runtime.scratch.tmp)}},
            {
                "name": "model-shared-cache",
                "persistentVolumeClaim": {"claimName": cache.claim_name},
            },
            *token_volumes,
        ],
        **placement(model),
    }
    if runtime.service_account_name:
        # The pods' identity: an IRSA role annotated on it (or webIdentity) fills the cache too.
        pod_spec["serviceAccountName"] = runtime.service_account_name
    if runtime.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in runtime.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": fill_job_name(model, key),
            "namespace": model.namespace,
            "labels": labels,
            "annotations": {MODEL_VERSION_ANNOTATION: source.version},
            "ownerReferences": [model.owner_reference],
        },
        "spec": {
            "backoffLimit": _FILL_ATTEMPTS - 1,
            # The download shares the revision's startup budget.
            "activeDeadlineSeconds": runtime.startup_timeout_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
