"""The Kubernetes API boundary: the only module that reads or writes cluster state.

Reads are plain lists; writes are server-side apply with one field manager, the scale
subresource for fixed replica counts, deletes, status merge patches and Events. Every write is
counted, so tests and the operator's metrics can prove that a steady-state reconcile writes
nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ForbiddenError, NotFoundError

from kinfer_operator.api import GROUP, KIND, PLURAL, VERSION
from kinfer_operator.metrics import API_WRITE_FAILURES, API_WRITES
from kinfer_operator.naming import MODEL_LABEL
from kinfer_operator.references import Reference
from kinfer_operator.world import Observed, WriteFailure

__all__ = ["FIELD_MANAGER", "Kube", "MissingPermission", "WriteError", "load_config"]

FIELD_MANAGER = "kinfer-operator"
_log = logging.getLogger(__name__)

_CHILD_KINDS: dict[str, str] = {
    "Deployment": "apps/v1",
    "Service": "v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "HTTPRoute": "gateway.networking.k8s.io/v1",
    "Job": "batch/v1",
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


def load_config(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster config when running in a pod, else the kubeconfig (KUBECONFIG honoured)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return client.ApiClient()


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
        self.writes[(verb, kind)] += 1
        self._here.writes = self.thread_writes() + 1
        API_WRITES.labels(verb=verb, kind=kind).inc()

    def thread_writes(self) -> int:
        """Writes made by the calling thread: one pass's own, while passes of other models
        run in other threads."""
        return int(getattr(self._here, "writes", 0))

    # -- reads -----------------------------------------------------------------------------

    def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The InferenceModel object, or None when it is gone."""
        try:
            obj = self._resource(f"{GROUP}/{VERSION}", KIND).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        return dict(obj.to_dict())

    def _list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Any]:
        listing = self._resource(api_version, kind).get(
            namespace=namespace, label_selector=selector
        )
        return [dict(item) for item in listing.to_dict().get("items", [])]

    def observe(
        self,
        namespace: str,
        model_name: str,
        model_uid: str,
        with_routes: bool = False,
        with_jobs: bool = False,
    ) -> Observed:
        """Children controlled by this InferenceModel (by owner UID) and the model's pods.

        HTTPRoutes are only listed for models that use Gateway API traffic, so clusters
        without the Gateway API CRDs (and operators without RBAC for them) never ask.
        """
        selector = f"{MODEL_LABEL}={model_name}"

        def owned(kind: str) -> tuple[Mapping[str, Any], ...]:
            items = self._list(_CHILD_KINDS[kind], kind, namespace, selector)
            return tuple(
                i
                for i in items
                if any(
                    ref.get("uid") == model_uid and ref.get("controller")
                    for ref in i.get("metadata", {}).get("ownerReferences") or []
                )
            )

        try:
            routes = owned("HTTPRoute") if with_routes else ()
        except ForbiddenError as err:
            raise MissingPermission(
                "the operator may not list httproutes.gateway.networking.k8s.io: install the "
                "chart with gatewayAPI.enabled=true to use spec.rollout.traffic.mode GatewayAPI"
            ) from err
        pods = tuple(self._list("v1", "Pod", namespace, selector))
        jobs = owned("Job") if with_jobs else ()  # model-cache fills (spec.model.cache)
        return Observed(
            deployments=owned("Deployment"),
            services=owned("Service"),
            pdbs=owned("PodDisruptionBudget"),
            hpas=owned("HorizontalPodAutoscaler"),
            routes=routes,
            pods=pods,
            jobs=jobs,
            fill_logs=self._fill_logs(namespace, jobs, pods),
        )

    def _fill_logs(
        self,
        namespace: str,
        jobs: tuple[Mapping[str, Any], ...],
        pods: tuple[Mapping[str, Any], ...],
    ) -> dict[str, str]:
        """The last log lines of the running pods of active fill Jobs (their progress).

        Only while a fill runs: with every version cached this reads nothing.
        """
        active = {
            j["metadata"]["name"] for j in jobs if int((j.get("status") or {}).get("active") or 0)
        }
        logs: dict[str, str] = {}
        for pod in pods:
            job = str((pod.get("metadata", {}).get("labels") or {}).get("job-name"))
            if job not in active or (pod.get("status") or {}).get("phase") != "Running":
                continue
            try:
                logs[job] = str(
                    client.CoreV1Api(self._dyn.client).read_namespaced_pod_log(
                        pod["metadata"]["name"], namespace, container="fill", tail_lines=5
                    )
                )
            except ApiException as err:  # progress is best effort; the Job says the rest
                _log.debug("no log of fill pod %s: %s", pod["metadata"]["name"], err.reason)
        return logs

    def missing(self, namespace: str, ref: Reference) -> str | None:
        """Why a referenced object is unusable, or None when it is there."""
        try:
            obj = self._resource("v1", ref.kind).get(name=ref.name, namespace=namespace)
        except NotFoundError:
            return f"{ref.field}: {ref.kind} {ref.name!r} not found in namespace {namespace}"
        if ref.key is not None and ref.key not in (obj.to_dict().get("data") or {}):
            return f"{ref.field}: Secret {ref.name!r} has no key {ref.key!r}"
        return None

    def outranked(self, peering: str, namespace: str | None, priority: int) -> bool:
        """A live kopf peer with a higher priority exists, so this operator is on standby.

        kopf pauses its own watches in that case; this lets kinfer's self-scheduled resyncs
        (which kopf does not know about) stand by too. Same rule as kopf: a peer is alive
        until `lastseen + lifetime`.
        """
        kind = "KopfPeering" if namespace else "ClusterKopfPeering"
        try:
            obj = self._resource("kopf.dev/v1", kind).get(name=peering, namespace=namespace)
        except NotFoundError:
            return False
        now = datetime.now(UTC)
        for peer in (obj.to_dict().get("status") or {}).values():
            if not isinstance(peer, dict) or "lastseen" not in peer:
                continue
            seen = datetime.fromisoformat(str(peer["lastseen"]))
            alive = seen + timedelta(seconds=int(peer.get("lifetime", 60))) > now
            if alive and int(peer.get("priority", 0)) > priority:
                return True
        return False

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

    def scale(self, namespace: str, deployment: str, replicas: int) -> None:
        """Set replicas through the scale subresource, so apply never owns spec.replicas."""
        self._count("scale", "Deployment")
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}/scale"
        try:
            self._dyn.request(
                "patch",
                path,
                body={"spec": {"replicas": replicas}},
                content_type="application/merge-patch+json",
                field_manager=FIELD_MANAGER,
            )
        except _WRITE_ERRORS as err:
            raise WriteError(_failure(err, "scale", "Deployment", deployment)) from err

    def delete(self, namespace: str, kind: str, name: str) -> None:
        """Delete a child (foreground not needed: its own dependents are GC'd by owner refs)."""
        self._count("delete", kind)
        # A Job's pods are its dependents; the API's default for Jobs would orphan them.
        body = {"propagationPolicy": "Background"} if kind == "Job" else None
        try:
            self._resource(_CHILD_KINDS[kind], kind).delete(
                name=name, namespace=namespace, body=body
            )
        except NotFoundError:
            _log.debug("%s %s/%s already gone", kind, namespace, name)
        except _WRITE_ERRORS as err:
            raise WriteError(_failure(err, "delete", kind, name)) from err

    def patch_model_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource; spec is never written."""
        self._count("patch-status", KIND)
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        self._dyn.request(
            "patch",
            path,
            body={"status": dict(status)},
            content_type="application/merge-patch+json",
            field_manager=FIELD_MANAGER,
        )

    def post_event(
        self, model: Mapping[str, Any], type_: str, reason: str, message: str, now: str
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
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._resource("v1", "Event").create(body=body, namespace=meta["namespace"])
        except Exception:  # an Event is best effort; never fail a reconcile over one
            _log.warning("could not post event %s on %s", reason, meta["name"], exc_info=True)
