"""Send a plan's writes: what differs is written, refused writes back off, 409s look again.

A failed write does not stop the others: a refused Deployment must not keep the Service or
the cleanup of old revisions from happening. A 409 Conflict means the pass read a stale cache
(the scale write carries the resourceVersion it read): not a failure to report, just a reason
to look again shortly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kinfer_operator._kube import WriteError
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import HASH_ANNOTATION
from kinfer_operator.reconcile.backoff import WriteBackoff, WriteKey
from kinfer_operator.reconcile.cluster import ClusterApi
from kinfer_operator.reconcile.plan import Plan, needs_apply
from kinfer_operator.world import WriteFailure

__all__ = ["Find", "WriteExecutor", "Written"]

_log = logging.getLogger(__name__)

Find = Callable[[str, str], Mapping[str, Any] | None]
"""`find(kind, name)`: the child as this pass observed it, or None."""


@dataclass
class Written:
    """What the writes of one pass ran into."""

    failures: list[WriteFailure] = field(default_factory=list)
    """Writes refused now, and refused earlier and still backing off (not sent)."""
    conflicts: int = 0
    """Writes refused with 409 Conflict: the pass read a stale cache."""


class WriteExecutor:
    """Writes plans through the cluster and remembers, per model, which writes back off."""

    def __init__(self, kube: ClusterApi, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self._monotonic = monotonic
        self._backoffs: dict[tuple[str, str], WriteBackoff] = {}
        self._guard = threading.Lock()

    def backoff_for(self, namespace: str, name: str, generation: int) -> WriteBackoff:
        """The model's remembered write failures; a new generation clears them."""
        with self._guard:
            backoff = self._backoffs.setdefault((namespace, name), WriteBackoff(self._monotonic))
        backoff.generation(generation)
        return backoff

    def forget(self, namespace: str, name: str) -> None:
        """Drop the model's write history once the model is deleted."""
        with self._guard:
            self._backoffs.pop((namespace, name), None)

    def execute(
        self, model: InferenceModel, find: Find, decided: Plan, backoff: WriteBackoff
    ) -> Written:
        """Write what differs from what `find` observed; says which writes failed or wait."""
        batch = _Batch(model, backoff)
        deployments_now: dict[str, Mapping[str, Any]] = {}
        for desired in decided.applies:
            kind, obj_name = desired["kind"], desired["metadata"]["name"]
            current = find(kind, obj_name)
            if needs_apply(desired, current):
                _log.info("applying %s %s/%s", kind, model.namespace, obj_name)
                digest = desired["metadata"]["annotations"][HASH_ANNOTATION]
                done, applied = batch.write(
                    ("apply", kind, obj_name), digest, partial(self._kube.apply, desired)
                )
                if done:
                    current = applied
            if kind == "Deployment" and current is not None:
                deployments_now[obj_name] = current
        for scale in decided.scales:
            current = deployments_now.get(scale.name) or find("Deployment", scale.name)
            if current is None:
                continue  # not there (its apply failed): nothing to scale yet
            have = int(current.get("spec", {}).get("replicas", 1))
            if have != scale.replicas:
                _log.info("scaling %s/%s to %d", model.namespace, scale.name, scale.replicas)
                version = current.get("metadata", {}).get("resourceVersion")
                batch.write(
                    ("scale", "Deployment", scale.name),
                    str(scale.replicas),
                    partial(self._kube.scale, model.namespace, scale.name, scale.replicas, version),
                )
        for delete in decided.deletes:
            _log.info("deleting %s %s/%s", delete.kind, model.namespace, delete.name)
            batch.write(
                ("delete", delete.kind, delete.name),
                "",
                partial(self._kube.delete, model.namespace, delete.kind, delete.name),
            )
        backoff.keep_only(batch.wanted)
        return batch.written


class _Batch:
    """One pass's writes of one model: each goes through the backoff, outcomes add up."""

    def __init__(self, model: InferenceModel, backoff: WriteBackoff) -> None:
        self._model = model
        self._backoff = backoff
        self.written = Written()
        self.wanted: list[WriteKey] = []

    def write(self, key: WriteKey, digest: str, action: Callable[[], Any]) -> tuple[bool, Any]:
        """(True, what the action returned) when it went through, else (False, None)."""
        self.wanted.append(key)
        waiting = self._backoff.waiting(key, digest)
        if waiting is not None:
            self.written.failures.append(waiting)
            return False, None
        try:
            result = action()
        except WriteError as err:
            if err.failure.code == 409:
                self.written.conflicts += 1
                return False, None
            delay = self._backoff.failed(key, digest, err.failure)
            _log.warning(
                "%s/%s: %s (next attempt in %.0fs)",
                self._model.namespace,
                self._model.name,
                err.failure.describe(),
                delay,
            )
            self.written.failures.append(err.failure)
            return False, None
        self._backoff.succeeded(key)
        return True, result
