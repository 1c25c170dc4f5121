"""An in-memory `ClusterApi` (reconcile/cluster.py), so unit tests can drive whole passes.

It stores what the reconciler writes, answers reads from that store, and can be told to
refuse writes the way the API server does (a WriteFailure per verb and kind). Writes follow
the API server where our children depend on it: server-side apply merges into the stored
object and drops only the fields this manager applied before and no longer applies (others'
fields such as status and the scale subresource's replicas survive); every write bumps the
resourceVersion; a scale with a stale resourceVersion is refused with 409 Conflict. A status
patch is pruned, defaulted and validated against the CRD's status schema (crd_schema.py), and
refused with 422 Invalid where the API server would refuse it.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from kinfer_operator._kube import WriteError
from kinfer_operator.children.activator_routes import CONFIGMAP_NAME
from kinfer_operator.events import Event
from kinfer_operator.references import Reference
from kinfer_operator.world import Observed, WriteFailure

from support.crd_schema import apply_defaults, prune, status_problems, status_schema

Refusal = Callable[[str, Mapping[str, Any]], WriteFailure | None]
"""(verb, object) -> the failure to raise, or None to let the write through."""


class FakeKube:
    """One InferenceModel and its children, kept as plain dicts."""

    def __init__(self, model: dict[str, Any]) -> None:
        self.model = copy.deepcopy(model)
        self.children: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.fill_logs: dict[str, str] = {}
        self.writes: Counter[tuple[str, str]] = Counter()
        self.events: list[Event] = []
        self.refuse: Refusal = lambda _verb, _obj: None
        self.observe_error: Exception | None = None
        self.missing_refs: dict[str, str] = {}
        self._created = 0
        self._version = 100
        self._applied: dict[tuple[str, str], dict[str, Any]] = {}
        self.activator: list[str] | None = ["10.244.0.50"]
        """The Ready activator pod IPs (None: no activator configured)."""
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        """ConfigMaps the operator owns outside any model (the activator's routes)."""

    def thread_writes(self) -> int:
        return sum(self.writes.values())

    # -- reads -------------------------------------------------------------------------

    def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.model)

    def missing(self, namespace: str, ref: Reference) -> str | None:
        return self.missing_refs.get(ref.name)

    def observe(
        self,
        namespace: str,
        model_name: str,
        model_uid: str,
        with_routes: bool = False,
        with_jobs: bool = False,
    ) -> Observed:
        if self.observe_error is not None:
            raise self.observe_error

        def owned(obj: Mapping[str, Any]) -> bool:
            refs = obj.get("metadata", {}).get("ownerReferences") or []
            return any(r.get("uid") == model_uid and r.get("controller") for r in refs)

        def of(kind: str) -> tuple[dict[str, Any], ...]:
            return tuple(
                copy.deepcopy(o)
                for (k, _), o in sorted(self.children.items())
                if k == kind and owned(o)
            )

        return Observed(
            deployments=of("Deployment"),
            services=of("Service"),
            pdbs=of("PodDisruptionBudget"),
            hpas=of("HorizontalPodAutoscaler"),
            routes=of("HTTPRoute") if with_routes else (),
            grpc_routes=of("GRPCRoute") if with_routes else (),
            pods=tuple(copy.deepcopy(self.pods)),
            configmaps=of("ConfigMap"),
            jobs=of("Job"),
            endpoint_slices=of("EndpointSlice"),
            fill_logs=dict(self.fill_logs),
        )

    def activator_ips(self) -> list[str] | None:
        return list(self.activator) if self.activator is not None else None

    def read_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.configmaps.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    # -- writes ------------------------------------------------------------------------

    def _check(self, verb: str, obj: Mapping[str, Any]) -> None:
        failure = self.refuse(verb, obj)
        if failure is not None:
            raise WriteError(failure)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        self.writes[("apply", kind)] += 1
        self._check("apply", obj)
        config = copy.deepcopy(dict(obj))
        before = self.children.get((kind, name))
        if before is None:
            self._created += 1
            stored = copy.deepcopy(config)
            stored["metadata"]["generation"] = 1
            stamp = f"2026-01-01T00:{self._created // 60:02d}:{self._created % 60:02d}Z"
            stored["metadata"]["creationTimestamp"] = stamp
            if kind == "Service":  # the API server allocates a ClusterIP; SSA keeps it
                stored["spec"]["clusterIP"] = f"10.96.0.{self._created % 250 + 1}"
            if kind == "Deployment":
                stored["spec"].setdefault("replicas", 1)
                stored["status"] = {"observedGeneration": 1}
        else:
            kept = _without(before, self._applied.get((kind, name), {}), config)
            stored = _merge(kept, config)
            if stored.get("spec") != before.get("spec"):
                stored["metadata"]["generation"] = int(before["metadata"]["generation"]) + 1
        stored["metadata"]["resourceVersion"] = self._next_version()
        self._applied[(kind, name)] = config
        if kind == "ConfigMap" and name == CONFIGMAP_NAME:
            self.configmaps[(str(stored["metadata"]["namespace"]), name)] = stored
            return copy.deepcopy(stored)
        self.children[(kind, name)] = stored
        return copy.deepcopy(stored)

    def scale(
        self, namespace: str, deployment: str, replicas: int, resource_version: str | None = None
    ) -> None:
        self.writes[("scale", "Deployment")] += 1
        obj = self.children[("Deployment", deployment)]
        self._check("scale", obj)
        if resource_version is not None and resource_version != obj["metadata"].get(
            "resourceVersion"
        ):
            raise WriteError(
                WriteFailure(
                    "scale",
                    "Deployment",
                    deployment,
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                )
            )
        obj["spec"]["replicas"] = replicas
        obj["metadata"]["resourceVersion"] = self._next_version()

    def delete(self, namespace: str, kind: str, name: str) -> None:
        self.writes[("delete", kind)] += 1
        self._check("delete", {"kind": kind, "metadata": {"name": name}})
        self.children.pop((kind, name), None)
        self._applied.pop((kind, name), None)

    def patch_model_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.writes[("patch-status", "InferenceModel")] += 1
        schema = status_schema()
        merged = _merge(self.model.get("status") or {}, status)
        stored = apply_defaults(schema, prune(schema, merged))
        problems = status_problems(stored)
        if problems:
            raise WriteError(
                WriteFailure(
                    "patch", "InferenceModel", name, 422, "Invalid", "; ".join(problems)[:4096]
                )
            )
        self.model["status"] = stored
        self.model["metadata"]["resourceVersion"] = self._next_version()

    def post_event(
        self, model: Mapping[str, Any], type_: str, reason: str, message: str, now: str
    ) -> None:
        self.writes[("create", "Event")] += 1
        self.events.append(Event(type_, reason, message))

    # -- what the Deployment controller and the kubelet would do ------------------------

    def deployments(self) -> list[dict[str, Any]]:
        return [o for (k, _), o in sorted(self.children.items()) if k == "Deployment"]

    def settle(self, ready: bool = True) -> None:
        """Every Deployment reaches its replica count (ready or not)."""
        for dep in self.deployments():
            want = int(dep["spec"].get("replicas", 1))
            have = want if ready else 0
            dep["status"] = {
                **dep.get("status", {}),
                "observedGeneration": 1,
                "replicas": want,
                "updatedReplicas": want,
                "readyReplicas": have,
                "availableReplicas": have,
            }

    def fail_pod_creation(self, name: str, message: str) -> None:
        """The ReplicaSet controller cannot create pods of this Deployment."""
        dep = self.children[("Deployment", name)]
        dep["status"] = {
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": message,
                }
            ],
        }

    def finish_job(self, name: str, outcome: str = "Complete", message: str = "") -> None:
        """The Job controller marks a Job Complete or Failed; its pod's termination message."""
        job = self.children[("Job", name)]
        job["status"] = {"conditions": [{"type": outcome, "status": "True", "reason": outcome}]}
        if message:
            self.pods.append(
                {
                    "metadata": {"name": f"{name}-x", "labels": {"job-name": name}},
                    "status": {
                        "containerStatuses": [{"state": {"terminated": {"message": message}}}]
                    },
                }
            )

    def set_spec(self, spec: dict[str, Any]) -> None:
        self.model["spec"] = copy.deepcopy(spec)
        self.model["metadata"]["generation"] = int(self.model["metadata"]["generation"]) + 1


def _without(
    live: Mapping[str, Any], before: Mapping[str, Any], after: Mapping[str, Any]
) -> dict[str, Any]:
    """`live` minus the fields the manager applied before and does not apply any more."""
    out = dict(copy.deepcopy(live))
    for key, value in before.items():
        if key not in after:
            out.pop(key, None)
        elif all(isinstance(v, Mapping) for v in (value, after[key], out.get(key))):
            out[key] = _without(out[key], value, after[key])
    return out


def _merge(old: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch."""
    out = dict(copy.deepcopy(old))
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
