"""kopf wiring: every trigger funnels into the one level-based Reconciler.

Watch events on InferenceModels cover create, update and resume (kopf lists every object when
it starts); a timer resyncs; events on owned Deployments and on the model's pods re-run the
owner's reconcile so status follows the world. None of these handlers make kopf persist state
on the object, so a no-op pass writes nothing at all.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from kinfer_operator.api import GROUP, KIND, PLURAL, VERSION
from kinfer_operator.naming import MODEL_LABEL
from kinfer_operator.reconcile import Reconciler

__all__ = ["RESYNC_SECONDS", "install"]

RESYNC_SECONDS = float(os.environ.get("KINFER_RESYNC_SECONDS", "30"))
_log = logging.getLogger(__name__)


def _owner_model(body: kopf.Body) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return str(ref["name"])
    return None


def install(reconciler: Reconciler, registry: kopf.OperatorRegistry | None = None) -> None:
    """Register the handlers on a kopf registry (the default one unless given)."""
    reg = registry or kopf.get_default_registry()

    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING  # our own Events carry the story
        settings.watching.server_timeout = 300
        settings.execution.max_workers = 8

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=reg)
    def model_event(type: str, name: str, namespace: str | None, **_: Any) -> None:
        assert namespace, "InferenceModel is namespaced"
        if type == "DELETED":
            reconciler.forget(namespace, name)
            return
        reconciler.reconcile(namespace, name, trigger="model")

    @kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, registry=reg)
    def resync(name: str, namespace: str | None, **_: Any) -> None:
        assert namespace, "InferenceModel is namespaced"
        reconciler.reconcile(namespace, name, trigger="resync")

    @kopf.on.event("apps", "v1", "deployments", labels={MODEL_LABEL: kopf.PRESENT}, registry=reg)
    def deployment_event(body: kopf.Body, namespace: str | None, type: str, **_: Any) -> None:
        owner = _owner_model(body)
        if owner and namespace:
            reconciler.reconcile(namespace, owner, trigger="deployment")

    @kopf.on.event("", "v1", "pods", labels={MODEL_LABEL: kopf.PRESENT}, registry=reg)
    def pod_event(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
        if namespace:
            reconciler.reconcile(namespace, str(labels[MODEL_LABEL]), trigger="pod")
