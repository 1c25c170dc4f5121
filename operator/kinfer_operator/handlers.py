"""kopf wiring: watches feed the informer cache and enqueue models; a fixed pool of workers
runs the one level-based Reconciler from a keyed work queue.

- Each watched kind has a kopf index function that puts the object into the `Store`. kopf
  runs index functions before any handler and holds every handler back until all watches
  have finished their initial listing, so no pass ever runs on a half-filled cache.
- Event handlers only enqueue the model's key (a model event only when something other
  than status changed: our own status writes do not wake the model again).
- Every pass schedules the model's next one on the queue's one scheduler: the periodic
  resync (a safety net: watches drive passes), or sooner when a rollout's analysis or pause
  is due, or a failed write's backoff runs out. A pass that raises is retried with per-key
  exponential backoff under a global rate limit.

The resync is not `@kopf.timer` on purpose: kopf puts a finalizer on every object that has a
timer, and a finalizer makes InferenceModels (and their namespaces) undeletable whenever the
operator is down or uninstalled. None of these handlers makes kopf write anything on the
object, so a no-op pass writes nothing at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from kinfer_operator.api import GROUP, PLURAL, VERSION
from kinfer_operator.metrics import CACHE_OBJECTS, QUEUE_DELAYED, QUEUE_DEPTH, QUEUE_RETRIES
from kinfer_operator.naming import MODEL_LABEL
from kinfer_operator.reconcile import Reconciler
from kinfer_operator.reconcile.queue import WorkQueue
from kinfer_operator.world import Store, WatchedKind
from kinfer_operator.world.activator import ActivatorEndpoints
from kinfer_operator.world.endpoints import SERVICE_NAME_LABEL
from kinfer_operator.world.store import ModelKey

__all__ = ["RELIST_SECONDS", "RESYNC_SECONDS", "WORKERS", "Controller", "install"]

RESYNC_SECONDS = float(os.environ.get("KINFER_RESYNC_SECONDS", "300"))
RELIST_SECONDS = float(os.environ.get("KINFER_RELIST_SECONDS", "600"))
"""How often the cache is made equal to a fresh listing (0: never). kopf resumes a broken
watch from a new listing and sends no event for what was deleted in the gap."""
WORKERS = int(os.environ.get("KINFER_WORKERS", "4"))
ROUTES_FLUSH_SECONDS = 1.0
"""How often the leader writes the activator's routing table if it changed (reconcile/
routes_table.py debounces the writes themselves)."""
ACTIVATOR_RELIST_SECONDS = 30.0
"""How often the Ready activator pods are listed afresh (a safety net for the watch, and
the only source when the operator watches some namespaces only)."""
IDLE_SECONDS = 30.0
"""A worker that waited this long for work does housekeeping (see `Controller._idle`)."""
_log = logging.getLogger(__name__)

_WATCHES: tuple[tuple[WatchedKind, str, str, str], ...] = (
    ("Deployment", "apps", "v1", "deployments"),
    ("Service", "", "v1", "services"),
    ("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets"),
    ("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers"),
    ("ConfigMap", "", "v1", "configmaps"),
    ("Job", "batch", "v1", "jobs"),
    ("Pod", "", "v1", "pods"),
    # The model Services' EndpointSlices (labelled like their Service): the retire pace waits
    # for a removed pod to leave them before the next one goes.
    ("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices"),
)
_ROUTES: tuple[WatchedKind, str, str, str] = (
    "HTTPRoute",
    "gateway.networking.k8s.io",
    "v1",
    "httproutes",
)
_GRPC_ROUTES: tuple[WatchedKind, str, str, str] = (
    "GRPCRoute",
    "gateway.networking.k8s.io",
    "v1",
    "grpcroutes",
)


def _identity(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What in a model, other than status, can change a pass's outcome."""
    meta = body.get("metadata") or {}
    return (
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        tuple(sorted((meta.get("annotations") or {}).items())),
        tuple(sorted((meta.get("labels") or {}).items())),
    )


class Controller:
    """The work queue, its workers, and what each pass leads to next."""

    def __init__(
        self,
        reconciler: Reconciler,
        store: Store,
        standby: Callable[[], bool] = lambda: False,
        relist: Callable[[], set[ModelKey]] = set,
        workers: int = WORKERS,
        resync_seconds: float = RESYNC_SECONDS,
        relist_seconds: float = RELIST_SECONDS,
        activator_refresh: Callable[[], bool] | None = None,
    ) -> None:
        """`activator_refresh`: list the Ready activator pods afresh, True when they
        changed (None: the operator has no activator)."""
        self.reconciler, self.store = reconciler, store
        self.queue: WorkQueue[ModelKey] = WorkQueue()
        self._standby, self._relist = standby, relist
        self._workers = workers
        self._resync = resync_seconds
        self._relist_every = relist_seconds
        self._relist_due = time.monotonic() + relist_seconds
        self._triggers: dict[ModelKey, str] = {}
        self._changed: set[ModelKey] = set()
        self._orphans: dict[ModelKey, str] = {}
        """Deleted models (by UID) whose children a worker has yet to delete."""
        self._lock = threading.Lock()
        self._was_standby = False
        self._deferred: set[ModelKey] = set()
        """Models a standby put off until its next resync; run at once when it takes over."""
        self._deleted = 0
        self._sized_at = 0.0
        self._threads: list[threading.Thread] = []
        self._activator_refresh = activator_refresh
        self._stopping = threading.Event()

    # -- feeding ---------------------------------------------------------------------------

    def enqueue(self, key: ModelKey, trigger: str) -> None:
        """Run a pass for the model soon; the first trigger since its last pass names it."""
        with self._lock:
            self._triggers.setdefault(key, trigger)
        self.queue.add(key)
        QUEUE_DEPTH.set(self.queue.depth())

    def model_seen(self, body: Mapping[str, Any]) -> None:
        """Cache a model, remembering whether more than its status changed."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        held = self.store.model(*key)
        self.store.upsert("InferenceModel", body)
        if held is None or _identity(held) != _identity(body):
            with self._lock:
                self._changed.add(key)

    def take_change(self, body: Mapping[str, Any]) -> ModelKey | None:
        """The model's key if a change worth a pass was cached for it (once)."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        with self._lock:
            if key not in self._changed:
                return None
            self._changed.discard(key)
        return key

    def pod_deleted(self, body: Mapping[str, Any]) -> ModelKey | None:
        """Forget a deleted pod, folding its GPU time into the model's cost ledger."""
        key = self.store.remove("Pod", body)
        self.pod_vanished(body)
        return key

    def pod_vanished(self, body: Mapping[str, Any]) -> None:
        """Fold a pod that is gone into the cost ledger (a relist's find: as of now)."""
        key = self.store.key_of("Pod", body)
        model = self.store.model(*key) if key is not None else None
        if model is not None:
            self.reconciler.costs.retire(model, body, time.time())

    def model_gone(self, key: ModelKey, uid: str) -> None:
        """Forget everything about a deleted model, and have a worker delete its children."""
        self.queue.discard(key)
        with self._lock:
            self._triggers.pop(key, None)
            self._changed.discard(key)
            self._deleted += 1
            self._orphans[key] = uid
        self.reconciler.forget(*key)
        self.enqueue(key, "deleted")

    # -- working ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker pool (idempotent)."""
        if self._threads:
            return
        if not self._standby():
            self._prepare_routes()
        if self._activator_refresh is not None:
            thread = threading.Thread(target=self._routes_loop, name="routes", daemon=True)
            thread.start()
            self._threads.append(thread)
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the workers after their current pass."""
        self._stopping.set()
        self.queue.shutdown()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()

    def _work(self) -> None:
        while not self.queue.closed:
            self.relist_if_due()
            key = self.queue.get(timeout=IDLE_SECONDS)
            if key is None:
                self._idle()
                continue
            try:
                self.process(key)
            except Exception:
                _log.exception("reconcile worker: unexpected error for %s/%s", *key)
            finally:
                self.queue.done(key)
                self._publish_gauges()

    def _publish_gauges(self) -> None:
        QUEUE_DEPTH.set(self.queue.depth())
        QUEUE_DELAYED.set(self.queue.delayed())
        now = time.monotonic()
        with self._lock:
            due = now - self._sized_at >= 5.0
            if due:
                self._sized_at = now
        if due:  # counting walks the whole cache: at most every few seconds
            publish_cache_size(self.store)

    def process(self, key: ModelKey) -> None:
        """One pass for one key, then schedule what comes next for it."""
        with self._lock:
            trigger = self._triggers.pop(key, "resync")
        if self._standby():
            # Another replica holds the leader-election Lease: nothing reconciles here,
            # whatever the trigger (the watches keep the cache current: a hot standby).
            self._was_standby = True
            with self._lock:
                self._deferred.add(key)
            self.queue.add_after(key, self._resync)
            return
        if self._was_standby:
            self._was_standby = False
            self._take_over()
        try:
            outcome = self.reconciler.reconcile(*key, trigger=trigger)
        except Exception:
            QUEUE_RETRIES.inc()
            delay = self.queue.add_rate_limited(key)
            _log.warning("reconcile of %s/%s failed; again in %.1fs", *key, delay, exc_info=True)
            return
        self.queue.forget(key)
        with self._lock:
            orphaned = self._orphans.pop(key, None)
        if orphaned is not None:
            self.reconciler.collect(*key, uid=orphaned)
        if outcome is None:  # the model is gone
            return
        delay = self._resync
        if outcome.requeue_after is not None:
            delay = min(delay, outcome.requeue_after)
        self.queue.add_after(key, delay)

    def activator_changed(self) -> None:
        """The Ready activator pods changed: every model's Front may change with them."""
        for key in self.store.models():
            self.enqueue(key, "activator")

    def _prepare_routes(self) -> None:
        """Before acting (at start, on taking over): the Ready activator pods and the routing
        table as last written, so models keep their port pairs."""
        if self._activator_refresh is None:
            return
        try:
            self._activator_refresh()
            self.reconciler.seed_routes()
        except Exception:
            _log.warning("could not read the activator's routes or pods", exc_info=True)

    def _routes_loop(self) -> None:
        """The one writer of the activator's routing table (the leader only), and the
        periodic relisting of the activator's pods."""
        refresh = self._activator_refresh
        relisted = time.monotonic()
        while not self._stopping.wait(ROUTES_FLUSH_SECONDS):
            if self._standby():
                continue
            try:
                if refresh is not None and time.monotonic() - relisted >= ACTIVATOR_RELIST_SECONDS:
                    relisted = time.monotonic()
                    if refresh():
                        self.activator_changed()
                self.reconciler.flush_routes()
            except Exception:
                _log.warning("could not write the activator's routing table", exc_info=True)

    def took_over(self) -> None:
        """This replica now acts: run the passes it put off as a standby now, not at their
        resync. Only models a pass was asked for (so kopf's initial listing is complete)."""
        self._prepare_routes()
        with self._lock:
            deferred, self._deferred = self._deferred, set()
        for key in deferred:
            self.enqueue(key, "leader")

    def _idle(self) -> None:
        """Nothing to do for a while: if models went away since last time, hand the memory
        their cached objects used back to the system (CPython keeps freed memory otherwise)."""
        with self._lock:
            deleted, self._deleted = self._deleted, 0
        if deleted:
            release_memory()
            publish_cache_size(self.store)

    def _take_over(self) -> None:
        """Back from standby: make sure the cache missed nothing while another replica acted."""
        # The cost ledger re-seeds from the statuses the active peer wrote.
        self._refresh("after standby", then=self.reconciler.costs.reset)

    def relist_if_due(self) -> None:
        """Every `relist_seconds`, one worker refreshes the cache from a fresh listing (a
        standby refreshes when it takes over instead)."""
        if self._relist_every <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if now < self._relist_due:
                return
            self._relist_due = now + self._relist_every
        if not self._standby():
            self._refresh("periodic")

    def _refresh(self, why: str, then: Callable[[], None] = lambda: None) -> None:
        """Relist into the cache, run `then`, and requeue the models whose objects changed."""
        try:
            changed = self._relist()
        except Exception:
            _log.warning("%s relist failed; the cache may hold deleted objects", why)
            return
        then()
        if changed:
            _log.info("%s relist: the cache was behind for %d models", why, len(changed))
        for key in changed:
            self.enqueue(key, "relist")
        publish_cache_size(self.store)


def release_memory() -> None:
    """Collect garbage, then ask glibc to return free heap pages (a no-op elsewhere)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def publish_cache_size(store: Store) -> None:
    """The cache's size by kind, as a gauge."""
    for kind, count in store.counts().items():
        CACHE_OBJECTS.labels(kind=kind).set(count)


def install(
    controller: Controller,
    registry: kopf.OperatorRegistry | None = None,
    watch_routes: bool = True,
    watch_grpc_routes: bool = False,
    activator: ActivatorEndpoints | None = None,
) -> None:
    """Register the watches and handlers on a kopf registry (the default one unless given).

    `watch_routes`: also watch HTTPRoutes (needs the Gateway API CRDs and RBAC for them);
    `watch_grpc_routes`: GRPCRoutes likewise; `activator`: where the Ready activator pods
    are held (its Service's EndpointSlices are watched into it).
    """
    reg = registry or kopf.get_default_registry()
    store = controller.store

    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING  # our own Events carry the story
        settings.watching.server_timeout = 300
        controller.start()

    @kopf.on.cleanup(registry=reg)
    def stop(**_: Any) -> None:
        controller.stop()

    @kopf.index(GROUP, VERSION, PLURAL, registry=reg, id="cache-models")
    async def index_model(body: kopf.Body, **_: Any) -> None:
        controller.model_seen(body)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=reg, id="models")
    async def model_event(type: str, body: kopf.Body, **_: Any) -> None:
        if type == "DELETED":
            key = store.remove("InferenceModel", body)
            if key is not None:
                controller.model_gone(key, str(body.get("metadata", {}).get("uid", "")))
        elif (key := controller.take_change(body)) is not None:
            controller.enqueue(key, "model")

    watches = [*_WATCHES, _ROUTES] if watch_routes else list(_WATCHES)
    if watch_grpc_routes:
        watches.append(_GRPC_ROUTES)
    for kind, group, version, plural in watches:
        _watch_children(reg, controller, kind, group, version, plural)
    if activator is not None:
        _watch_activator(reg, controller, activator)


def _watch_activator(
    reg: kopf.OperatorRegistry, controller: Controller, activator: ActivatorEndpoints
) -> None:
    labels = {SERVICE_NAME_LABEL: activator.service}

    def ours(body: kopf.Body, **_: Any) -> bool:
        return activator.is_ours(body)

    @kopf.on.event(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        labels=labels,
        when=ours,
        registry=reg,
        id="activator-endpointslices",
    )
    async def activator_event(type: str, body: kopf.Body, **_: Any) -> None:
        changed = activator.remove(body) if type == "DELETED" else activator.update(body)
        if changed:
            controller.activator_changed()


def _watch_children(
    reg: kopf.OperatorRegistry,
    controller: Controller,
    kind: WatchedKind,
    group: str,
    version: str,
    plural: str,
) -> None:
    store = controller.store
    labels = {MODEL_LABEL: kopf.PRESENT}
    trigger = kind.lower()

    @kopf.index(group, version, plural, labels=labels, registry=reg, id=f"cache-{plural}")
    async def index_child(body: kopf.Body, **_: Any) -> None:
        store.upsert(kind, body)

    @kopf.on.event(group, version, plural, labels=labels, registry=reg, id=plural)
    async def child_event(type: str, body: kopf.Body, **_: Any) -> None:
        if type == "DELETED":
            key = controller.pod_deleted(body) if kind == "Pod" else store.remove(kind, body)
        else:
            key = store.key_of(kind, body)
        if key is not None:
            controller.enqueue(key, trigger)
