"""kopf wiring: every trigger funnels into the one level-based Reconciler.

Watch events on InferenceModels cover create, update and resume (kopf lists every object when
it starts); events on owned Deployments and on the model's pods re-run the owner's reconcile
so status follows the world; and every pass schedules the next one (a periodic resync, or
sooner when a rollout needs it).

The resync is scheduled here rather than with `@kopf.timer` on purpose: kopf puts a finalizer
on every object that has a timer, and a finalizer makes InferenceModels (and their
namespaces) undeletable whenever the operator is down or uninstalled. None of these handlers
makes kopf write anything on the object, so a no-op pass writes nothing at all.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
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


class _Requeue:
    """Delayed re-runs of a model's reconcile (controller-runtime's RequeueAfter).

    Every pass leaves one pending timer per model: the periodic resync, or earlier when a
    rollout's analysis or pause is due. The earliest wins. While `standby()` says a peer with
    a higher priority is active, nothing reconciles, whatever the trigger: kopf pauses its
    watches only once it has seen that peer's keep-alive, and two replicas starting together
    both acted for up to a peering lifetime before this check (seen on the real node).
    """

    def __init__(self, reconciler: Reconciler, standby: Callable[[], bool]) -> None:
        self._reconciler = reconciler
        self._standby = standby
        self._timers: dict[tuple[str, str], tuple[float, threading.Timer]] = {}
        self._lock = threading.Lock()

    def run(self, namespace: str, name: str, trigger: str) -> None:
        if self._standby():
            self.after(namespace, name, RESYNC_SECONDS)
            return
        try:
            outcome = self._reconciler.reconcile(namespace, name, trigger=trigger)
        except Exception:
            self.after(namespace, name, RESYNC_SECONDS)  # level-based: try again later
            raise
        if outcome is None:  # the model is gone
            return
        delay = RESYNC_SECONDS
        if outcome.requeue_after is not None:
            delay = min(delay, outcome.requeue_after)
        self.after(namespace, name, delay)

    def after(self, namespace: str, name: str, delay: float) -> None:
        key, due = (namespace, name), time.monotonic() + delay
        with self._lock:
            pending = self._timers.get(key)
            if pending is not None and pending[0] <= due and pending[1].is_alive():
                return
            if pending is not None:
                pending[1].cancel()
            timer = threading.Timer(delay, self._fire, args=(namespace, name))
            timer.daemon = True
            self._timers[key] = (due, timer)
            timer.start()

    def _fire(self, namespace: str, name: str) -> None:
        with self._lock:
            self._timers.pop((namespace, name), None)
        try:
            self.run(namespace, name, "resync")
        except Exception:
            _log.exception("scheduled reconcile of %s/%s failed", namespace, name)

    def cancel(self, namespace: str, name: str) -> None:
        with self._lock:
            pending = self._timers.pop((namespace, name), None)
        if pending is not None:
            pending[1].cancel()


def install(
    reconciler: Reconciler,
    registry: kopf.OperatorRegistry | None = None,
    standby: Callable[[], bool] = lambda: False,
) -> None:
    """Register the handlers on a kopf registry (the default one unless given).

    `standby` tells whether a higher-priority peer is the active operator: then no trigger
    reconciles here.
    """
    reg = registry or kopf.get_default_registry()
    requeue = _Requeue(reconciler, standby)

    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING  # our own Events carry the story
        settings.watching.server_timeout = 300
        settings.execution.max_workers = 8

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=reg)
    def model_event(type: str, name: str, namespace: str | None, **_: Any) -> None:
        assert namespace, "InferenceModel is namespaced"
        if type == "DELETED":
            requeue.cancel(namespace, name)
            reconciler.forget(namespace, name)
            return
        requeue.run(namespace, name, "model")

    @kopf.on.event("apps", "v1", "deployments", labels={MODEL_LABEL: kopf.PRESENT}, registry=reg)
    def deployment_event(body: kopf.Body, namespace: str | None, **_: Any) -> None:
        owner = _owner_model(body)
        if owner and namespace:
            requeue.run(namespace, owner, "deployment")

    @kopf.on.event("", "v1", "pods", labels={MODEL_LABEL: kopf.PRESENT}, registry=reg)
    def pod_event(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
        if namespace:
            requeue.run(namespace, str(labels[MODEL_LABEL]), "pod")
