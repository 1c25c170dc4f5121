"""The Kubernetes API boundary: the only module that reads or writes cluster state.

Reconcile passes read from the informer cache (`world.store`), not from here: this module
answers the few reads that are not watched (referenced PVCs, a relist after a standby) and
makes every write: server-side apply with one field manager, the scale subresource for fixed
replica counts, deletes, status merge patches and Events. Every call is counted by verb and
kind, so the operator's metrics show that a steady state costs the API server nothing. It
also keeps the leader-election Lease (see `election`): those calls count as API requests but
not as writes, since their steady renewals say nothing about reconciling.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, NotFoundError, ResourceNotFoundError

from kinfer_operator.api import GROUP, KIND, PLURAL, VERSION
from kinfer_operator.api._base import format_time
from kinfer_operator.election import LeaseRecord
from kinfer_operator.metrics import API_REQUESTS, API_WRITE_FAILURES, API_WRITES
from kinfer_operator.naming import MODEL_LABEL
from kinfer_operator.references import Reference
from kinfer_operator.world import WatchedKind, WriteFailure

__all__ = [
    "API_VERSIONS",
    "FIELD_MANAGER",
    "Kube",
    "MissingPermission",
    "WriteError",
    "load_config",
]

FIELD_MANAGER = "kinfer-operator"
_log = logging.getLogger(__name__)

API_VERSIONS: dict[str, str] = {
    KIND: f"{GROUP}/{VERSION}",
    "Pod": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
    "GRPCRoute": "gateway.networking.k8s.io/v1",
    "ConfigMap": "v1",
    "Job": "batch/v1",
    "EndpointSlice": "discovery.k8s.io/v1",
}


class MissingPermission(Exception):
    """The operator's RBAC does not allow something this model needs."""


class WriteError(Exception):
    """A write of a child did not go through; `failure` says what the API server answered."""

    def __init__(self, failure: WriteFailure) -> None:
        super().__init__(failure.describe())
        self.failure = failure


def _api_message(err: ApiException) -> tuple[str, str]:
    """(reason, message) of the Status object the API server sent with an error."""
    raw = err.body.decode(errors="replace") if isinstance(err.body, bytes) else err.body
    try:
        body = json.loads(raw or "{}")
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    reason = str(body.get("reason") or err.reason or "Error")
    message = str(body.get("message") or raw or err.reason or "").strip()
    return reason, message[:_MESSAGE_LIMIT]


def _failure(err: Exception, verb: str, kind: str, name: str) -> WriteFailure:
    if isinstance(err, ApiException) and err.status:
        reason, message = _api_message(err)
        failure = WriteFailure(verb, kind, name, int(err.status), reason, message)
    else:
        text = str(err)[:_MESSAGE_LIMIT]
        failure = WriteFailure(verb, kind, name, None, type(err).__name__, text)
    API_WRITE_FAILURES.labels(verb=verb, kind=kind, code=str(failure.code or 0)).inc()
    return failure


_MESSAGE_LIMIT = 2048
"""Enough for the API server's field errors; status and Events stay readable."""


_WRITE_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)
"""What a write may raise: an API server answer, or no answer at all."""


def _lease_body(name: str, namespace: str, record: LeaseRecord) -> dict[str, Any]:
    """The Lease as a plain dict: the client's models turn the times back into datetimes,
    which it sends in a form the API server refuses on a whole second."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if record.version:
        meta["resourceVersion"] = record.version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.duration_s,
            "acquireTime": _micro_time(record.acquired),
            "renewTime": _micro_time(record.renewed),
            "leaseTransitions": record.transitions,
        },
    }


def _micro_time(at: datetime | None) -> str | None:
    """A Lease's MicroTime: always six fraction digits, which the API server insists on
    (`isoformat()` drops them on a whole second)."""
    if at is None:
        return None
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _lease_record(lease: Mapping[str, Any]) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_s=int(spec.get("leaseDurationSeconds") or 1),
        acquired=_parse_time(spec.get("acquireTime")),
        renewed=_parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
    )


def _parse_time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:  # another client wrote something odd: the times are informative only
        return None


def load_config(kubeconfig: str | None = None, pool_size: int = 8) -> client.ApiClient:
    """In-cluster config when running in a pod, else the kubeconfig (KUBECONFIG honoured).

    `pool_size`: connections kept to the API server; at least the threads that call it,
    or urllib3 opens and drops extra ones with a "Connection pool is full" warning each.
    """
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class Kube:
    """Typed-dict access to the handful of resources kinfer touches."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        self._dyn = DynamicClient(api or load_config())  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self.writes: Counter[tuple[str, str]] = Counter()
        self._here = threading.local()

    def _resource(self, api_version: str, kind: str) -> Any:
        with self._lock:  # discovery is lazy and not thread-safe
            return self._dyn.resources.get(api_version=api_version, kind=kind)

    def _count(self, verb: str, kind: str) -> None:
        API_REQUESTS.labels(verb=verb, kind=kind).inc()
        self.writes[(verb, kind)] += 1
        self._here.writes = self.thread_writes() + 1
        API_WRITES.labels(verb=verb, kind=kind).inc()

    def thread_writes(self) -> int:
        """Writes made by the calling thread: one pass's own, while passes of other models
        run in other threads."""
        return int(getattr(self._here, "writes", 0))

    # -- reads -----------------------------------------------------------------------------

    def _read(self, verb: str, kind: str) -> None:
        API_REQUESTS.labels(verb=verb, kind=kind).inc()

    def list(
        self, kind: WatchedKind, namespaces: Sequence[str] = ()
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Every object of a watched kind that belongs to a model (the cache's relist), and
        the resourceVersion the listing was taken at.

        The whole cluster, or each of `namespaces` when the operator watches only those;
        then the earliest of the listings' versions, which all of them are at least as new as.
        """
        selector = None if kind == KIND else MODEL_LABEL
        resource = self._resource(API_VERSIONS[kind], kind)
        items: list[dict[str, Any]] = []
        versions: list[str] = []
        scopes: Sequence[str | None] = namespaces or [None]
        for namespace in scopes:
            self._read("list", kind)
            listing = resource.get(namespace=namespace, label_selector=selector).to_dict()
            items.extend(dict(i) for i in listing.get("items", []))
            versions.append(str((listing.get("metadata") or {}).get("resourceVersion", "")))
        if not all(v.isdigit() for v in versions):
            return items, None
        return items, min(versions, key=int)

    def list_where(
        self,
        kind: WatchedKind,
        namespace: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Objects of a kind in one namespace that match the selectors (the operator's own
        objects that no model labels: the activator's EndpointSlices, the routes ConfigMap)."""
        resource = self._resource(API_VERSIONS[kind], kind)
        self._read("list", kind)
        listing = resource.get(
            namespace=namespace, label_selector=label_selector, field_selector=field_selector
        ).to_dict()
        return [dict(i) for i in listing.get("items", [])]

    def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str | None:
        """The last lines a container logged, or None when they cannot be read."""
        self._read("get", "Pod/log")
        try:
            return str(
                client.CoreV1Api(self._dyn.client).read_namespaced_pod_log(
                    pod, namespace, container=container, tail_lines=lines
                )
            )
        except ApiException as err:
            _log.debug("no log of pod %s/%s: %s", namespace, pod, err.reason)
            return None

    def missing(self, namespace: str, ref: Reference) -> str | None:
        """Why a referenced object is unusable, or None when it is there."""
        self._read("get", ref.kind)
        try:
            self._resource("v1", ref.kind).get(name=ref.name, namespace=namespace)
        except NotFoundError:
            return f"{ref.field}: {ref.kind} {ref.name!r} not found in namespace {namespace}"
        return None

    # -- the leader-election Lease (see `election`) ----------------------------------------

    def read_lease(self, namespace: str, name: str, timeout: float) -> LeaseRecord | None:
        """The Lease as stored, or None when it does not exist yet."""
        self._read("get", "Lease")
        try:
            lease = self._leases().get(name=name, namespace=namespace, _request_timeout=timeout)
        except NotFoundError:
            return None
        return _lease_record(lease.to_dict())

    def create_lease(
        self, namespace: str, name: str, record: LeaseRecord, timeout: float
    ) -> LeaseRecord | None:
        """Create the Lease; None when another replica created it first (409)."""
        self._read("create", "Lease")
        body = _lease_body(name, namespace, dataclasses.replace(record, version=""))
        try:
            lease = self._leases().create(body=body, namespace=namespace, _request_timeout=timeout)
        except ConflictError:
            return None
        return _lease_record(lease.to_dict())

    def replace_lease(
        self, namespace: str, name: str, record: LeaseRecord, timeout: float
    ) -> LeaseRecord | None:
        """Replace the Lease if it is still at `record.version` (compare-and-swap); None
        when it changed since (409 Conflict): another replica wrote it."""
        self._read("update", "Lease")
        body = _lease_body(name, namespace, record)
        try:
            lease = self._leases().replace(
                body=body, name=name, namespace=namespace, _request_timeout=timeout
            )
        except ConflictError:
            return None
        return _lease_record(lease.to_dict())

    def _leases(self) -> Any:
        return self._resource("coordination.k8s.io/v1", "Lease")

    def serves(self, kind: str) -> bool:
        """Whether the API server serves `kind` at its API_VERSIONS version (its CRD is
        installed), asked through discovery."""
        try:
            self._resource(API_VERSIONS[kind], kind)
        except ResourceNotFoundError:
            return False
        return True

    def may_watch(self, group: str, resource: str, namespaces: Sequence[str] = ()) -> bool:
        """Whether this operator may list and watch `resource`, cluster-wide or in each of
        `namespaces` (asked with SelfSubjectAccessReviews, which everyone may create)."""
        authz = client.AuthorizationV1Api(self._dyn.client)
        for namespace in namespaces or [""]:
            for verb in ("list", "watch"):
                self._read("create", "SelfSubjectAccessReview")
                review = client.V1SelfSubjectAccessReview(
                    spec=client.V1SelfSubjectAccessReviewSpec(
                        resource_attributes=client.V1ResourceAttributes(
                            group=group, resource=resource, verb=verb, namespace=namespace
                        )
                    )
                )
                answer = authz.create_self_subject_access_review(review)
                if answer.status is None or not answer.status.allowed:
                    return False
        return True

    # -- writes ----------------------------------------------------------------------------

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply with kinfer's field manager; returns the object as stored."""
        kind = str(obj["kind"])
        resource = self._resource(str(obj["apiVersion"]), kind)
        self._count("apply", kind)
        try:
            result = resource.server_side_apply(
                body=dict(obj), field_manager=FIELD_MANAGER, force_conflicts=True
            )
        except _WRITE_ERRORS as err:
            raise WriteError(_failure(err, "apply", kind, str(obj["metadata"]["name"]))) from err
        return dict(result.to_dict())

    def scale(
        self, namespace: str, deployment: str, replicas: int, resource_version: str | None = None
    ) -> dict[str, Any]:
        """Set replicas through the scale subresource, so apply never owns spec.replicas.

        `resource_version` (of the Deployment as the cache saw it) makes the write conditional:
        a count decided from a stale read is refused with 409 Conflict instead of undoing a
        change the cache has not seen yet. Returns the Scale object.
        """
        self._count("scale", "Deployment")
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}/scale"
        body: dict[str, Any] = {"spec": {"replicas": replicas}}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            result = self._dyn.request(
                "patch",
                path,
                body=body,
                content_type="application/merge-patch+json",
                field_manager=FIELD_MANAGER,
            )
        except _WRITE_ERRORS as err:
            raise WriteError(_failure(err, "scale", "Deployment", deployment)) from err
        return dict(result.to_dict())

    def delete(self, namespace: str, kind: str, name: str) -> None:
        """Delete a child (foreground not needed: its own dependents are GC'd by owner refs)."""
        self._count("delete", kind)
        # A Job's pods are its dependents; the API's default for Jobs would orphan them.
        body = {"propagationPolicy": "Background"} if kind == "Job" else None
        try:
            self._resource(API_VERSIONS[kind], kind).delete(
                name=name, namespace=namespace, body=body
            )
        except NotFoundError:
            _log.debug("%s %s/%s already gone", kind, namespace, name)
        except _WRITE_ERRORS as err:
            raise WriteError(_failure(err, "delete", kind, name)) from err

    def patch_model_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource (spec is never written); returns the model."""
        self._count("patch-status", KIND)
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        result = self._dyn.request(
            "patch",
            path,
            body={"status": dict(status)},
            content_type="application/merge-patch+json",
            field_manager=FIELD_MANAGER,
        )
        return dict(result.to_dict())

    def post_event(
        self, model: Mapping[str, Any], type_: str, reason: str, message: str, now: datetime
    ) -> None:
        """A core/v1 Event on the InferenceModel, shown by `kubectl describe im`."""
        meta = model["metadata"]
        self._count("create", "Event")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "kinfer-operator"},
            "reportingComponent": "kinfer-operator",
            "reportingInstance": "kinfer-operator",
            "firstTimestamp": format_time(now),
            "lastTimestamp": format_time(now),
            "count": 1,
        }
        try:
            self._resource("v1", "Event").create(body=body, namespace=meta["namespace"])
        except Exception:  # an Event is best effort; never fail a reconcile over one
            _log.warning("could not post event %s on %s", reason, meta["name"], exc_info=True)
