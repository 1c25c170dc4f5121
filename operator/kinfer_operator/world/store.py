"""The operator's informer cache: every watched object of every model, held in memory.

kopf's watches feed it (its index functions run for each object before any handler, and
kopf starts handlers only once every watch has finished its initial listing, which is
controller-runtime's WaitForCacheSync); the objects returned by our own writes feed it too
(write-through), so the pass after a write does not see the world from before it. A
reconcile pass reads only from here: a steady-state pass makes no API call at all.

Objects are trimmed to the fields a pass reads (no managedFields, no pod specs, no
Deployment templates) and are replaced, never mutated, so readers may keep references.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from kinfer_operator.api import GROUP, KIND
from kinfer_operator.naming import MODEL_LABEL
from kinfer_operator.world.observed import Observed

__all__ = ["CHILD_KINDS", "ModelKey", "Store", "WatchedKind"]

WatchedKind = Literal[
    "InferenceModel",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "HTTPRoute",
    "GRPCRoute",
    "ConfigMap",
    "Job",
    "Pod",
    "EndpointSlice",
]
CHILD_KINDS: tuple[WatchedKind, ...] = (
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "HTTPRoute",
    "GRPCRoute",
    "ConfigMap",
    "Job",
)
TOMBSTONE_SECONDS = 600.0
"""How long a child we deleted stays ignored if its DELETED event never comes, and how long
a deleted object's UID is kept from coming back through a relist."""
ModelKey = tuple[str, str]
"""(namespace, name) of an InferenceModel: the work queue's key."""

_Objects = dict[str, Mapping[str, Any]]
"""name -> object, for one kind."""


def _trim(kind: WatchedKind, obj: Mapping[str, Any]) -> dict[str, Any]:
    """Keep what a pass reads; the rest of a pod or Deployment is most of its size."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    out: dict[str, Any] = {"metadata": meta}
    spec = obj.get("spec") or {}
    if kind == "Pod":
        out["spec"] = {"nodeName": spec["nodeName"]} if "nodeName" in spec else {}
        # GPU cost reads the containers' resources (world/cost.py)
        resources = [
            {"resources": c["resources"]} for c in spec.get("containers") or [] if "resources" in c
        ]
        if resources:
            out["spec"]["containers"] = resources
    elif kind == "Deployment":
        out["spec"] = {"replicas": spec.get("replicas", 1)}
    elif kind == "EndpointSlice":
        # Which pods the Service routes to: the retire pace reads it (world/endpoints.py).
        out["endpoints"] = [
            {"conditions": e.get("conditions") or {}, "targetRef": e.get("targetRef") or {}}
            for e in obj.get("endpoints") or []
        ]
    else:
        out["spec"] = spec
    if "status" in obj:
        out["status"] = obj["status"]
    if kind == "InferenceModel":
        out["apiVersion"], out["kind"] = obj.get("apiVersion", ""), KIND
    return out


def _newer(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Whether `new` is a later version than `old`.

    resourceVersions are opaque by contract but are etcd revisions in practice; when they
    are not both integers, the object just received wins.
    """
    a = str(new.get("metadata", {}).get("resourceVersion", ""))
    b = str(old.get("metadata", {}).get("resourceVersion", ""))
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


def _written_after(obj: Mapping[str, Any], version: str | None) -> bool:
    """Whether the object was written after a listing taken at `version` (unknown: no)."""
    held = str(obj.get("metadata", {}).get("resourceVersion", ""))
    if version is None or not (held.isdigit() and version.isdigit()):
        return False
    return int(held) > int(version)


def _uid_of(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("uid", ""))


def _same(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    """Whether `a` is the same object as `b`, at any version."""
    return a is not None and _uid_of(a) == _uid_of(b)


def _expire(deaths: OrderedDict[str, float], now: float) -> None:
    """Forget UIDs older than `TOMBSTONE_SECONDS` (their events cannot still be coming);
    oldest first, so this costs nothing when nothing is due."""
    while deaths:
        at = next(iter(deaths.values()))
        if now - at <= TOMBSTONE_SECONDS:
            return
        deaths.popitem(last=False)


def _model_of(kind: WatchedKind, obj: Mapping[str, Any]) -> ModelKey | None:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    if not namespace:
        return None
    if kind == "InferenceModel":
        return str(namespace), str(meta["name"])
    owner = (meta.get("labels") or {}).get(MODEL_LABEL)
    return (str(namespace), str(owner)) if owner else None


class Store:
    """Thread-safe: kopf's event loop writes, the reconcile workers read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[ModelKey, Mapping[str, Any]] = {}
        self._children: dict[ModelKey, dict[WatchedKind, _Objects]] = {}
        self._owners: dict[tuple[str, WatchedKind, str], ModelKey] = {}
        self._tombstones: OrderedDict[str, float] = OrderedDict()
        """UID -> monotonic time of our own delete: a late event of the deleted object (its
        last status update, sent before the delete) must not bring it back to life."""
        self._gone: OrderedDict[str, float] = OrderedDict()
        """UID -> monotonic time its DELETED event arrived: a relist in flight must not bring
        it back either."""

    # -- feeding ---------------------------------------------------------------------------

    def upsert(self, kind: WatchedKind, obj: Mapping[str, Any]) -> ModelKey | None:
        """Hold the object (unless an equal or later version is held); returns the model
        it belongs to, to be enqueued."""
        key = _model_of(kind, obj)
        if key is None:
            return None
        trimmed = _trim(kind, obj)
        name = str(trimmed["metadata"]["name"])
        uid = _uid_of(trimmed)
        with self._lock:
            if uid in self._tombstones:
                return key
            if kind == "InferenceModel":
                held = self._models.get(key)
                if held is None or _newer(trimmed, held):
                    self._models[key] = trimmed
                return key
            objects = self._children.setdefault(key, {}).setdefault(kind, {})
            held = objects.get(name)
            if held is None or _newer(trimmed, held):
                objects[name] = trimmed
                self._owners[(key[0], kind, name)] = key
        return key

    def remove(self, kind: WatchedKind, obj: Mapping[str, Any]) -> ModelKey | None:
        """Forget a deleted object; returns its model."""
        key = _model_of(kind, obj)
        if key is None:
            return None
        uid = _uid_of(obj)
        now = time.monotonic()
        with self._lock:
            self._tombstones.pop(uid, None)
            if uid:
                self._gone[uid] = now
                self._gone.move_to_end(uid)
            _expire(self._gone, now)
            if kind == "InferenceModel":
                self._models.pop(key, None)
            else:
                self._drop_locked(key, kind, str(obj["metadata"]["name"]))
        return key

    def _drop_locked(self, key: ModelKey, kind: WatchedKind, name: str) -> None:
        self._owners.pop((key[0], kind, name), None)
        kinds = self._children.get(key)
        if kinds is None:
            return
        kinds.get(kind, {}).pop(name, None)
        if not kinds.get(kind):
            kinds.pop(kind, None)
        if not kinds:
            del self._children[key]

    def deleted(self, namespace: str, kind: WatchedKind, name: str) -> None:
        """Write-through of our own delete of a child: forget it, and ignore late events of
        it until its DELETED event arrives (or `TOMBSTONE_SECONDS` pass)."""
        now = time.monotonic()
        with self._lock:
            key = self._owners.get((namespace, kind, name))
            if key is None:
                return
            held = self._children.get(key, {}).get(kind, {}).get(name)
            uid = _uid_of(held or {})
            if uid:
                self._tombstones[uid] = now
                self._tombstones.move_to_end(uid)
            _expire(self._tombstones, now)
            self._drop_locked(key, kind, name)

    def scaled(self, namespace: str, deployment: str, scale: Mapping[str, Any]) -> None:
        """Write-through of a scale subresource answer: its replicas and resourceVersion are
        the Deployment's."""
        with self._lock:
            key = self._owners.get((namespace, "Deployment", deployment))
            objects = self._children.get(key, {}).get("Deployment", {}) if key else {}
            held = objects.get(deployment)
            if held is None:
                return
            meta = {**held["metadata"], **_version_of(scale)}
            spec = {**held.get("spec", {}), "replicas": scale.get("spec", {}).get("replicas")}
            objects[deployment] = {**held, "metadata": meta, "spec": spec}

    def replace(
        self,
        kind: WatchedKind,
        listing: Iterable[Mapping[str, Any]],
        version: str | None = None,
        dropped: Callable[[Mapping[str, Any]], None] = lambda obj: None,
    ) -> set[ModelKey]:
        """Bring one kind in line with a fresh listing taken at `version` (the list's
        resourceVersion): deletions that sent no event (paused watches, a watch gap) are
        dropped. Returns every model that gained or lost an object.

        The listing speaks only for the moment it was taken: an object held at a later
        version was written after it and stays, and one whose DELETED event arrived while
        the listing was in flight does not come back. `dropped` gets each object found gone
        (as last held), after the cache is updated.
        """
        fresh: dict[tuple[ModelKey, str], dict[str, Any]] = {}
        for obj in listing:
            key = _model_of(kind, obj)
            if key is not None:
                fresh[(key, str(obj["metadata"]["name"]))] = _trim(kind, obj)
        with self._lock:
            held = self._held_locked(kind)
            kept: dict[tuple[ModelKey, str], Mapping[str, Any]] = {}
            for entry, obj in held.items():
                new = fresh.pop(entry, None)
                if new is not None:
                    kept[entry] = new if _newer(new, obj) else obj
                elif _written_after(obj, version):
                    kept[entry] = obj
            for entry, obj in fresh.items():
                uid = _uid_of(obj)
                if uid not in self._tombstones and uid not in self._gone:
                    kept[entry] = obj
            self._set_held_locked(kind, held, kept)
        # Only objects that came or went (a name now held by another object counts): a newer
        # listed version is nearly always a watch event still on its way (kopf's own relist
        # after a broken watch re-sends every object, so only deletions are ever lost), and
        # requeueing for it would only add passes under load.
        gone = {e: o for e, o in held.items() if not _same(kept.get(e), o)}
        came = {e for e, o in kept.items() if not _same(held.get(e), o)}
        for obj in gone.values():
            dropped(obj)
        return {key for key, _ in gone.keys() | came}

    def _held_locked(self, kind: WatchedKind) -> dict[tuple[ModelKey, str], Mapping[str, Any]]:
        if kind == "InferenceModel":
            return {(key, key[1]): obj for key, obj in self._models.items()}
        return {
            (key, name): obj
            for key, kinds in self._children.items()
            for name, obj in kinds.get(kind, {}).items()
        }

    def _set_held_locked(
        self,
        kind: WatchedKind,
        held: Mapping[tuple[ModelKey, str], Any],
        objects: dict[tuple[ModelKey, str], Mapping[str, Any]],
    ) -> None:
        if kind == "InferenceModel":
            self._models = {key: obj for (key, _), obj in objects.items()}
            return
        for key, name in held:
            self._drop_locked(key, kind, name)
        for (key, name), obj in objects.items():
            self._children.setdefault(key, {}).setdefault(kind, {})[name] = obj
            self._owners[(key[0], kind, name)] = key

    # -- reading ---------------------------------------------------------------------------

    def key_of(self, kind: WatchedKind, obj: Mapping[str, Any]) -> ModelKey | None:
        """The model an object belongs to (by its model label), whether held or not."""
        return _model_of(kind, obj)

    def model(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The InferenceModel as last seen, or None when it is gone."""
        with self._lock:
            return self._models.get((namespace, name))

    def models(self) -> list[ModelKey]:
        """Every model held."""
        with self._lock:
            return list(self._models)

    def all_of(self, kind: WatchedKind) -> list[Mapping[str, Any]]:
        """Every held child of one kind, across models: for limits that span the cluster."""
        with self._lock:
            return [o for kinds in self._children.values() for o in kinds.get(kind, {}).values()]

    def observe(self, namespace: str, model_name: str, model_uid: str) -> Observed:
        """The model's children that it controls (by owner UID) and its pods."""
        with self._lock:
            kinds = {
                k: tuple(v.values())
                for k, v in self._children.get((namespace, model_name), {}).items()
            }

        def owned(kind: WatchedKind) -> tuple[Mapping[str, Any], ...]:
            return tuple(
                o
                for o in kinds.get(kind, ())
                if any(
                    ref.get("uid") == model_uid
                    and ref.get("controller")
                    and ref.get("kind") == KIND
                    and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
                    for ref in o.get("metadata", {}).get("ownerReferences") or []
                )
            )

        return Observed(
            deployments=tuple(sorted(owned("Deployment"), key=_name)),
            services=tuple(sorted(owned("Service"), key=_name)),
            pdbs=owned("PodDisruptionBudget"),
            hpas=owned("HorizontalPodAutoscaler"),
            routes=owned("HTTPRoute"),
            grpc_routes=owned("GRPCRoute"),
            configmaps=owned("ConfigMap"),
            jobs=owned("Job"),
            pods=tuple(sorted(kinds.get("Pod", ()), key=_name)),
            endpoint_slices=tuple(sorted(kinds.get("EndpointSlice", ()), key=_name)),
        )

    def counts(self) -> dict[str, int]:
        """Objects held, by kind: the cache's size, for metrics."""
        with self._lock:
            out = {"InferenceModel": len(self._models)}
            for kinds in self._children.values():
                for kind, objects in kinds.items():
                    out[kind] = out.get(kind, 0) + len(objects)
            return out


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def _version_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    rv = obj.get("metadata", {}).get("resourceVersion")
    return {"resourceVersion": rv} if rv is not None else {}
