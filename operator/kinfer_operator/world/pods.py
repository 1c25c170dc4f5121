"""Read why a revision's pods are not serving: GPU shortage, failed model load, image pulls,
env the kubelet cannot resolve (a missing Secret or key)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kinfer_operator.references import CONFIG_ERROR

__all__ = ["PodDiagnosis", "diagnose_pods", "pod_creation_reason"]

_PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName"}
_KILLED = {137, 143}  # 128 + SIGKILL, 128 + SIGTERM


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
    startup_timed_out: str | None = None
    """The kubelet killed a runtime that never became ready: its startup probe gave up."""
    config_error: str | None = None
    """Kubelet message when a container cannot be created from its spec
    (`CreateContainerConfigError`: e.g. its credentials Secret or key is missing)."""


def _scheduling_message(pod: Mapping[str, Any]) -> str | None:
    for cond in pod.get("status", {}).get("conditions") or []:
        if (cond.get("type"), cond.get("status"), cond.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            return str(cond.get("message") or "unschedulable")
    return None


def _killed_before_ready(cs: Mapping[str, Any]) -> str | None:
    """The kubelet stopped a container that never passed its startup probe: SIGTERM or SIGKILL
    (exit 143/137, not the OOM killer) while the current attempt has not started either."""
    last = (cs.get("lastState") or {}).get("terminated") or {}
    if last.get("exitCode") not in _KILLED or last.get("reason") == "OOMKilled":
        return None
    if cs.get("started") or cs.get("ready"):
        return None
    return (
        f"the kubelet's startup probe killed the runtime before its model was ready "
        f"(exit code {last['exitCode']}, {cs.get('restartCount', 0)} restart(s)): downloading, "
        f"loading and warming up took longer than spec.runtime.startupTimeoutSeconds allows"
    )


def _container_failure(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """('load', msg) for a runtime that exited non-zero, ('pull', msg) for image trouble,
    ('startup', msg) for one the startup probe killed, ('config', msg) for env or volumes the
    kubelet cannot resolve."""
    for cs in pod.get("status", {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _PULL_FAILURES:
            return "pull", str(waiting.get("message") or waiting["reason"])
        if waiting.get("reason") == CONFIG_ERROR:
            return "config", str(waiting.get("message") or CONFIG_ERROR)
        killed = _killed_before_ready(cs)
        if killed is not None:
            return "startup", killed
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
    gpu = other = load = pull = startup = config = None
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
            elif kind == "startup":
                startup = startup or text
            elif kind == "config":
                config = config or text
            else:
                load = load or text
    return PodDiagnosis(
        gpu_unschedulable=gpu,
        unschedulable=other,
        load_failed=load,
        image_pull_failed=pull,
        startup_timed_out=startup,
        config_error=config,
    )
