"""What a reconcile pass needs from the cluster, and the production answer to it.

`ClusterApi` is the Protocol the Reconciler depends on; `tests/support/fake_kube.py` is an
in-memory implementation that drives whole passes in unit tests. `CachedCluster` is the real
one: reads from the informer cache, writes through `_kube.Kube`, and puts what each write
returns back into the cache so the next pass sees its own writes.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from kinfer_operator._kube import Kube, MissingPermission
from kinfer_operator.references import Reference
from kinfer_operator.world import Observed, Store, WatchedKind
from kinfer_operator.world.activator import ActivatorEndpoints
from kinfer_operator.world.endpoints import SERVICE_NAME_LABEL
from kinfer_operator.world.store import CHILD_KINDS, ModelKey

__all__ = ["REFERENCE_TTL_SECONDS", "CachedCluster", "ClusterApi", "relist"]

FILL_CONTAINER, FILL_LOG_LINES = "fill", 5
"""The model-cache fill Job's container, and how many of its last log lines hold progress."""
REFERENCE_TTL_SECONDS = 300.0
"""How long a referenced PVC found present is trusted without asking again.

PVCs are not watched (the operator may only `get` them), so this bounds both the API reads
of a steady state and how late a deleted claim is noticed.
"""

_CACHED_WRITES: tuple[WatchedKind, ...] = (*CHILD_KINDS, "EndpointSlice")
"""Kinds whose writes go back into the cache at once (the `<name>-kinfer` slice too)."""


class ClusterApi(Protocol):
    """Reads of the observed world and writes of children, status and Events. Writes of
    children raise `WriteError` when they do not go through."""

    def thread_writes(self) -> int: ...

    def get_model(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def missing(self, namespace: str, ref: Reference) -> str | None: ...

    def observe(
        self,
        namespace: str,
        model_name: str,
        model_uid: str,
        with_routes: bool = False,
        with_jobs: bool = False,
    ) -> Observed: ...

    def apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]: ...

    def activator_ips(self) -> Sequence[str] | None:
        """The Ready activator pods' addresses; None when no activator is configured."""
        ...

    def read_configmap(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A ConfigMap the operator itself owns (the activator routes), read from the API."""
        ...

    def scale(
        self, namespace: str, deployment: str, replicas: int, resource_version: str | None = None
    ) -> None: ...

    def delete(self, namespace: str, kind: str, name: str) -> None: ...

    def patch_model_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...

    def post_event(
        self, model: Mapping[str, Any], type_: str, reason: str, message: str, now: datetime
    ) -> None: ...


class CachedCluster:
    """`ClusterApi` over the informer cache and the API boundary."""

    def __init__(
        self,
        store: Store,
        kube: Kube,
        routes_watched: bool,
        grpc_routes_watched: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        activator: ActivatorEndpoints | None = None,
    ) -> None:
        """`activator`: where the Ready activator pods are held (fed by a watch), when the
        operator has an activator."""
        self._store, self._kube = store, kube
        self.activator = activator
        self._routes_watched = routes_watched
        self._grpc_routes_watched = grpc_routes_watched
        self._monotonic = monotonic
        self._present: dict[tuple[str, Reference], float] = {}
        self._lock = threading.Lock()

    def thread_writes(self) -> int:
        return self._kube.thread_writes()

    def get_model(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._store.model(namespace, name)

    def observe(
        self,
        namespace: str,
        model_name: str,
        model_uid: str,
        with_routes: bool = False,
        with_jobs: bool = False,
    ) -> Observed:
        """`with_jobs`: the model has a model cache, so read the progress of running fills
        (the only reads a pass makes beyond the cache, and only while a fill runs)."""
        if with_routes and not self._routes_watched:
            raise MissingPermission(
                "the operator does not watch httproutes.gateway.networking.k8s.io: install "
                "the Gateway API CRDs and the chart with gatewayAPI.enabled=true, then restart "
                "the operator, to use spec.rollout.traffic.mode GatewayAPI"
            )
        observed = self._store.observe(namespace, model_name, model_uid)
        if not self._grpc_routes_watched:
            observed = dataclasses.replace(observed, grpc_routes_served=False)
        if not with_jobs:
            return observed
        logs = {}
        for job, pod in observed.running_fill_pods():
            text = self._kube.pod_log_tail(namespace, pod, FILL_CONTAINER, FILL_LOG_LINES)
            if text is not None:
                logs[job] = text
        return dataclasses.replace(observed, fill_logs=logs) if logs else observed

    def missing(self, namespace: str, ref: Reference) -> str | None:
        key = (namespace, ref)
        with self._lock:
            seen = self._present.get(key)
        if seen is not None and self._monotonic() - seen < REFERENCE_TTL_SECONDS:
            return None
        problem = self._kube.missing(namespace, ref)
        with self._lock:
            if problem is None:
                self._present[key] = self._monotonic()
            else:
                self._present.pop(key, None)
        return problem

    def apply(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        applied = self._kube.apply(obj)
        if applied.get("kind") in _CACHED_WRITES:
            self._store.upsert(applied["kind"], applied)
        return applied

    def activator_ips(self) -> Sequence[str] | None:
        return self.activator.ips() if self.activator is not None else None

    def refresh_activator(self) -> bool:
        """List the activator Service's slices afresh (at start and on taking over); True
        when the Ready IPs changed."""
        if self.activator is None:
            return False
        slices = self._kube.list_where(
            "EndpointSlice",
            self.activator.namespace,
            label_selector=f"{SERVICE_NAME_LABEL}={self.activator.service}",
        )
        return self.activator.replace(list(slices))

    def read_configmap(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        found = self._kube.list_where(
            "ConfigMap", namespace, field_selector=f"metadata.name={name}"
        )
        return found[0] if found else None

    def scale(
        self, namespace: str, deployment: str, replicas: int, resource_version: str | None = None
    ) -> None:
        answer = self._kube.scale(namespace, deployment, replicas, resource_version)
        self._store.scaled(namespace, deployment, answer)

    def delete(self, namespace: str, kind: str, name: str) -> None:
        self._kube.delete(namespace, kind, name)
        if kind in _CACHED_WRITES:
            self._store.deleted(namespace, kind, name)

    def patch_model_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        model = self._kube.patch_model_status(namespace, name, status)
        self._store.upsert("InferenceModel", model)

    def post_event(
        self, model: Mapping[str, Any], type_: str, reason: str, message: str, now: datetime
    ) -> None:
        self._kube.post_event(model, type_, reason, message, now)


def relist(
    store: Store,
    kube: Kube,
    namespaces: Sequence[str] = (),
    with_routes: bool = True,
    with_grpc_routes: bool = False,
    pod_vanished: Callable[[Mapping[str, Any]], None] = lambda pod: None,
) -> set[ModelKey]:
    """Make the cache equal to a fresh listing of every watched kind; returns the models whose
    objects changed.

    The operator does this when it takes over from a standby (its watches were paused, so
    deletions in between sent no event) and every `--relist-seconds` (a watch that ends and
    resumes from a new listing sends no event for what was deleted in the gap); in-process
    e2e passes use it as their snapshot. `pod_vanished` gets each pod found gone, whose
    DELETED event never came.
    `namespaces` may hold glob patterns, as `--namespace` does.
    """
    globs = [ns for ns in namespaces if set(ns) & set("*?[]!")]
    exact = [] if globs else list(namespaces)
    kinds: list[WatchedKind] = ["InferenceModel", *CHILD_KINDS, "Pod", "EndpointSlice"]
    changed: set[ModelKey] = set()
    for kind in kinds:
        if (kind == "HTTPRoute" and not with_routes) or (
            kind == "GRPCRoute" and not with_grpc_routes
        ):
            continue
        listing, version = kube.list(kind, exact)
        if globs:
            listing = [o for o in listing if _matches(o, namespaces)]
        changed |= store.replace(
            kind, listing, version, dropped=pod_vanished if kind == "Pod" else lambda obj: None
        )
    return changed


def _matches(obj: Mapping[str, Any], patterns: Sequence[str]) -> bool:
    namespace = str(obj.get("metadata", {}).get("namespace", ""))
    return any(fnmatch.fnmatchcase(namespace, p) for p in patterns)
