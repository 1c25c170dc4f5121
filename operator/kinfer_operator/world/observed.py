"""The observed world of one InferenceModel: its owned children and pods, as read this pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kinfer_operator.naming import REVISION_LABEL, TRACK_LABEL

__all__ = ["DeploymentView", "Observed", "WriteFailure"]

_RETRYABLE_CODES = frozenset({408, 409, 425, 429})
"""4xx answers that say "try again", not "this object is wrong"."""


@dataclass(frozen=True)
class WriteFailure:
    """The API server's answer to a write of one child that did not go through.

    What the API server says about a desired child is part of the observed world: status
    reports it, the rollout machine rolls a canary back over it, and the reconciler backs
    off before asking again.
    """

    verb: str
    """apply, scale or delete."""
    kind: str
    name: str
    code: int | None
    """HTTP status; None when no answer came (timeout, connection refused)."""
    reason: str
    """The API server's Status reason (Invalid, Forbidden, InternalError...), or the error
    type when there was no answer."""
    message: str
    """The API server's own message, which names the offending field."""

    @property
    def permanent(self) -> bool:
        """A 4xx refusal: asking again with the same object gets the same answer.

        Server errors, timeouts, conflicts and throttling may pass on their own.
        """
        return (
            self.code is not None and 400 <= self.code < 500 and (self.code not in _RETRYABLE_CODES)
        )

    def describe(self) -> str:
        """One line for status and Events, quoting the API server."""
        answer = f"{self.code} {self.reason}" if self.code is not None else self.reason
        target = f"{self.kind} {self.name}"
        if self.permanent:
            return f"the API server refused to {self.verb} {target} ({answer}): {self.message}"
        return f"retrying {self.verb} of {target} after {answer}: {self.message}"


@dataclass(frozen=True)
class DeploymentView:
    """The facts of one revision's Deployment that decisions depend on."""

    name: str
    revision: str
    track: str
    spec_replicas: int
    replicas: int
    ready: int
    available: int
    updated: int
    settled: bool
    """The Deployment controller has observed the latest generation of it."""
    deadline_exceeded: bool
    """The Deployment's progress deadline passed without the replicas becoming available."""
    replica_failure: str | None
    """The controllers' message when pods of this Deployment cannot be created (the
    ReplicaFailure condition the Deployment copies from its ReplicaSet's FailedCreate)."""
    created: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> DeploymentView:
        """Read the view from a Deployment object."""
        meta = obj.get("metadata", {})
        spec = obj.get("spec", {})
        status = obj.get("status", {}) or {}
        labels = meta.get("labels") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        progressing: Mapping[str, Any] = conditions.get("Progressing") or {}
        failure: Mapping[str, Any] = conditions.get("ReplicaFailure") or {}
        return cls(
            name=meta["name"],
            revision=labels.get(REVISION_LABEL, ""),
            track=labels.get(TRACK_LABEL, ""),
            spec_replicas=int(spec.get("replicas", 1)),
            replicas=int(status.get("replicas", 0)),
            ready=int(status.get("readyReplicas", 0)),
            available=int(status.get("availableReplicas", 0)),
            updated=int(status.get("updatedReplicas", 0)),
            settled=int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0)),
            deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
            replica_failure=str(failure.get("message") or failure.get("reason") or "FailedCreate")
            if failure.get("status") == "True"
            else None,
            created=str(meta.get("creationTimestamp", "")),
            labels=labels,
            annotations=meta.get("annotations") or {},
        )

    def fully_available(self, want: int) -> bool:
        """All `want` replicas run the current template and pass readiness."""
        want = max(want, 1)
        return self.settled and self.updated >= want and self.available >= want


@dataclass(frozen=True)
class Observed:
    """Every child of one InferenceModel, grouped by kind, plus the model's pods."""

    deployments: tuple[Mapping[str, Any], ...] = ()
    services: tuple[Mapping[str, Any], ...] = ()
    pdbs: tuple[Mapping[str, Any], ...] = ()
    hpas: tuple[Mapping[str, Any], ...] = ()
    routes: tuple[Mapping[str, Any], ...] = ()
    grpc_routes: tuple[Mapping[str, Any], ...] = ()
    grpc_routes_served: bool = True
    """Whether the operator watches GRPCRoutes (their CRD is installed and RBAC allows it):
    without, a GatewayAPI model gets its HTTPRoute alone and says so in status."""
    pods: tuple[Mapping[str, Any], ...] = ()
    configmaps: tuple[Mapping[str, Any], ...] = ()
    """The shadow ConfigMap, when the model has one."""
    jobs: tuple[Mapping[str, Any], ...] = ()
    """Model-cache fill Jobs (children/modelcache.py)."""
    endpoint_slices: tuple[Mapping[str, Any], ...] = ()
    """EndpointSlices of the model's Services (they carry the Service's labels): which pods
    each Service routes to right now."""
    fill_logs: Mapping[str, str] = field(default_factory=dict)
    """Last log lines of running fill Jobs, by Job name: their download progress."""
    views: tuple[DeploymentView, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "views", tuple(DeploymentView.of(d) for d in self.deployments))

    def deployment(self, revision: str) -> DeploymentView | None:
        """The Deployment of a revision, if it exists."""
        return next((v for v in self.views if v.revision == revision), None)

    def stable(self) -> DeploymentView | None:
        """The Deployment labelled as the stable track (newest wins if an earlier pass died
        between relabelling and cleanup)."""
        stables = sorted((v for v in self.views if v.track == "stable"), key=lambda v: v.created)
        return stables[-1] if stables else None

    def pods_of(self, revision: str) -> list[Mapping[str, Any]]:
        """Pods of one revision."""
        return [
            p
            for p in self.pods
            if (p.get("metadata", {}).get("labels") or {}).get(REVISION_LABEL) == revision
        ]

    def running_fill_pods(self) -> list[tuple[str, str]]:
        """(Job, pod) for each running pod of an active model-cache fill Job: whose log lines
        carry the download's progress."""
        active = {
            j["metadata"]["name"]
            for j in self.jobs
            if int((j.get("status") or {}).get("active") or 0)
        }
        found = []
        for pod in self.pods:
            job = str((pod.get("metadata", {}).get("labels") or {}).get("job-name"))
            if job in active and (pod.get("status") or {}).get("phase") == "Running":
                found.append((job, str(pod["metadata"]["name"])))
        return found

    def children_by_kind(self) -> dict[str, tuple[Mapping[str, Any], ...]]:
        """Every observed child (not the pods), by kind."""
        return {
            "Deployment": self.deployments,
            "Service": self.services,
            "PodDisruptionBudget": self.pdbs,
            "HorizontalPodAutoscaler": self.hpas,
            "HTTPRoute": self.routes,
            "GRPCRoute": self.grpc_routes,
            "ConfigMap": self.configmaps,
            "Job": self.jobs,
        }

    def find(self, kind: str, name: str) -> Mapping[str, Any] | None:
        """An observed child by kind and name (EndpointSlices too: the `<name>-kinfer`
        slice the operator writes while the activator fronts the model)."""
        pool = self.endpoint_slices if kind == "EndpointSlice" else self.children_by_kind()[kind]
        return next((o for o in pool if o.get("metadata", {}).get("name") == name), None)
