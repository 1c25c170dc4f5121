"""Read why a revision's pods are not serving: GPU shortage, failed model load, image pulls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PodDiagnosis", "diagnose_pods", "pod_creation_reason"]

_PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName"}


@dataclass(frozen=True)
class PodDiagnosis:
    """The worst thing the pods of one revision report, as (reason, message) pairs."""

    gpu_unschedulable: str | None = None
    """Scheduler message when pods wait for GPUs: a wait, not a failure."""
    unschedulable: str | None = None
    """Scheduler message for any other placement failure."""
    load_failed: str | None = None
    """Container message when the runtime exited or crash-loops (the model failed to load)."""
    image_pull_failed: str | None = None
    """Kubelet message when the runtime image cannot be pulled."""


def _scheduling_message(pod: Mapping[str, Any]) -> str | None:
    for cond in pod.get("status", {}).get("conditions") or []:
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            return str(cond.get("message") or "unschedulable")
    return None


def _container_failure(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """('load', msg) for a runtime that exited non-zero, ('pull', msg) for image trouble."""
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _PULL_FAILURES:
            return "pull", str(waiting.get("message") or waiting["reason"])
        for terminated in (state.get("terminated"), (cs.get("lastState") or {}).get("terminated")):
            if terminated and terminated.get("exitCode", 0) != 0:
                detail = str(terminated.get("message") or terminated.get("reason") or "").strip()
                code = terminated.get("exitCode")
                return "load", f"runtime exited with code {code}: {detail}".rstrip(": ")
        if waiting.get("reason") == "CrashLoopBackOff":
            return "load", str(waiting.get("message") or "runtime container is crash-looping")
    return None


_CREATE_FAILURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ServiceAccountNotFound", ("error looking up service account",)),
    ("QuotaExceeded", ("exceeded quota", "failed quota")),
    ("PodSecurityViolation", ("violates podsecurity",)),
    (
        "LimitRangeViolation",
        ("usage per container is", "usage per pod is", "limit to request ratio per"),
    ),
    ("PriorityClassNotFound", ("no priorityclass with name",)),
)
"""Admission messages (ServiceAccount, ResourceQuota, PodSecurity, LimitRanger, Priority
plugins) as the ReplicaSet controller quotes them, mapped to a reason each."""


def pod_creation_reason(message: str) -> str:
    """A condition reason for a ReplicaSet's FailedCreate message; PodCreationFailed for
    causes without a reason of their own (webhooks, other admission plugins)."""
    text = message.lower()
    for reason, needles in _CREATE_FAILURES:
        if any(n in text for n in needles):
            return reason
    return "PodCreationFailed"


def diagnose_pods(pods: Iterable[Mapping[str, Any]], gpu_resource: str) -> PodDiagnosis:
    """Summarise the pods of one revision; the first pod reporting a problem wins."""
    gpu = other = load = pull = None
    for pod in pods:
        message = _scheduling_message(pod)
        if message is not None:
            if f"Insufficient {gpu_resource}" in message:
                gpu = gpu or message
            else:
                other = other or message
        failure = _container_failure(pod)
        if failure is not None:
            kind, text = failure
            if kind == "pull":
                pull = pull or text
            else:
                load = load or text
    return PodDiagnosis(
        gpu_unschedulable=gpu, unschedulable=other, load_failed=load, image_pull_failed=pull
    )
