"""Deterministic names, labels and revision hashes shared by every child builder."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from kinfer_operator import runtime_contract as rc
from kinfer_operator.model import InferenceModel

__all__ = [
    "CACHE_KEY_ANNOTATION",
    "HASH_ANNOTATION",
    "MODEL_LABEL",
    "REVISION_LABEL",
    "TEMPLATE_HASH_ANNOTATION",
    "TEMPLATE_MARK_ANNOTATION",
    "TEMPLATE_ROLL_ANNOTATION",
    "TRACK_LABEL",
    "Track",
    "child_labels",
    "deployment_name",
    "endpoint_url",
    "hpa_name",
    "object_hash",
    "pod_labels",
    "revision_of",
    "service_name",
]

Track = Literal["stable", "canary"]

DOMAIN = "serving.kinfer.io"
MODEL_LABEL = f"{DOMAIN}/model"
REVISION_LABEL = f"{DOMAIN}/revision"
TRACK_LABEL = f"{DOMAIN}/track"
HASH_ANNOTATION = f"{DOMAIN}/applied-hash"
MODEL_VERSION_ANNOTATION = f"{DOMAIN}/model-version"
CACHE_KEY_ANNOTATION = f"{DOMAIN}/cache-key"
"""On a Deployment: the model-cache version (sha256[:32]) its pods load."""
TEMPLATE_HASH_ANNOTATION = f"{DOMAIN}/template-hash"
"""On a Deployment: the digest of the pod template the operator built for it."""
TEMPLATE_ROLL_ANNOTATION = f"{DOMAIN}/template-roll"
"""On a Deployment: the template digest it was given by an operator upgrade (a template-only
change), so the upgrade's rolls in flight can be counted from the cache alone."""
TEMPLATE_MARK_ANNOTATION = f"{DOMAIN}/template-mark"
"""On a pod template, for tests only: makes the operator's template differ on demand."""
MANAGED_BY = "kinfer"


def revision_of(model: InferenceModel) -> str:
    """Hash of everything that shapes a serving pod: model, runtime and placement.

    Replicas, autoscaling and rollout settings are left out, so scaling never starts a
    rollout, and reverting the spec to a previous revision yields that revision's hash again.
    Defaults are excluded so a field added with a default in a later kinfer release does not
    change the revision of existing models.
    """
    spec = model.spec
    shaping = {
        # The cache's size limit and the fill Job's resources never reach a serving pod:
        # changing them starts no rollout.
        "model": spec.model.model_dump(
            by_alias=True, exclude_defaults=True, exclude={"cache": {"max_size", "fill_resources"}}
        ),
        "runtime": spec.runtime.model_dump(by_alias=True, exclude_defaults=True),
        "scheduling": spec.scheduling.model_dump(by_alias=True, exclude_defaults=True),
    }
    canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def object_hash(obj: dict[str, object]) -> str:
    """Stable digest of a desired child, stored on it so an unchanged child is never rewritten."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def deployment_name(model: InferenceModel, revision: str) -> str:
    """One Deployment per revision, like ReplicaSets: promotion never restarts warm pods."""
    return f"{model.name}-{revision}"


def service_name(model: InferenceModel) -> str:
    """The model's stable in-cluster endpoint."""
    return model.name


def hpa_name(model: InferenceModel, track: Track) -> str:
    """HPAs are per track so the canary can be sized independently of stable."""
    return model.name if track == "stable" else f"{model.name}-canary"


def child_labels(model: InferenceModel) -> dict[str, str]:
    """Labels on every child: the app.kubernetes.io set plus our model selector label.

    `app.kubernetes.io/instance` is deliberately absent: it is Argo CD's default tracking
    label, and a child carrying the model's name there would look like part of an Argo CD
    Application of that name, which would then prune it as not being in git.
    """
    return {
        "app.kubernetes.io/name": "kinfer-runtime",
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/part-of": "kinfer",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MODEL_LABEL: model.name,
    }


def pod_labels(model: InferenceModel, revision: str) -> dict[str, str]:
    """Pod labels never include the track: promotion relabels Deployments, not pods."""
    return {
        **child_labels(model),
        "app.kubernetes.io/version": model.spec.model.version,
        REVISION_LABEL: revision,
    }


def endpoint_url(model: InferenceModel) -> str:
    """In-cluster URL of the model's Open Inference Protocol resource."""
    host = f"{service_name(model)}.{model.namespace}.svc.cluster.local"
    return f"http://{host}:{rc.HTTP_PORT}/v2/models/{model.name}"
