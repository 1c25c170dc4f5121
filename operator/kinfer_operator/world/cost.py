"""GPU time per revision, from observed pods: each started pod's GPU request x its lifetime.

Times are whole Unix seconds (metav1.Time has no finer grain). A pod holds its GPUs from
`status.startTime` until its containers' last `finishedAt` once all have terminated, else
until its `deletionTimestamp` (if being deleted), else until now. Pods that never started
cost nothing.

Status keeps only facts that change when a pod starts or ends (`RevisionCost`); the live
figure is `retired + finished + runningGpus x now - runningGpuStartSum`. Deleted pods are
folded into an in-memory `CostLedger` when their DELETED event arrives, and the ledger is
persisted through status, so a restarted operator rebuilds the same totals: deleted pods
from status, live pods from their start times. A pod deleted while no operator watched is
never counted (an undercount, never a double count).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kinfer_operator.api.status import RevisionCost
from kinfer_operator.naming import REVISION_LABEL

__all__ = [
    "MAX_REVISIONS",
    "CostLedger",
    "PodUsage",
    "live_gpu_seconds",
    "pod_usage",
    "resource_name_of",
    "revision_costs",
]

MAX_REVISIONS = 12
"""Revisions kept per model (status and ledger): stable, canary, then the most recent."""
_FOLDED_UIDS = 512
"""Deleted pod UIDs remembered per model, so a replayed DELETED event is not counted twice."""
_TERMINAL = frozenset({"Succeeded", "Failed"})


def _seconds(stamp: Any) -> int | None:
    if not stamp:
        return None
    return int(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp())


def resource_name_of(model: Mapping[str, Any]) -> str:
    """The GPU resource the model requests (spec.runtime.gpu.resourceName)."""
    gpu = ((model.get("spec") or {}).get("runtime") or {}).get("gpu") or {}
    return str(gpu.get("resourceName") or "nvidia.com/gpu")


@dataclass(frozen=True)
class PodUsage:
    """What a pod's GPU time depends on."""

    revision: str
    gpus: int
    start: int | None
    end: int | None
    """When its containers all finished; None while any still runs."""
    deleting: int | None
    """Its deletionTimestamp: the latest it may hold GPUs, once being deleted."""

    def seconds(self, now: float) -> float:
        """GPU-seconds up to `now`."""
        if not self.gpus or self.start is None:
            return 0.0
        end: float = now
        if self.end is not None:
            end = self.end
        elif self.deleting is not None:
            end = min(now, self.deleting)
        return self.gpus * max(0.0, end - self.start)


def _gpus(pod: Mapping[str, Any], resource: str) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        amount = (resources.get("limits") or {}).get(resource)
        if amount is None:
            amount = (resources.get("requests") or {}).get(resource)
        total += int(amount or 0)
    return total


def _end(pod: Mapping[str, Any]) -> int | None:
    """When the pod stopped holding GPUs, if it has: its containers' last finishedAt once all
    have terminated and the pod is done or being deleted (a lone crashed container restarts)."""
    status = pod.get("status") or {}
    done = status.get("phase") in _TERMINAL
    if not done and not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    ends = [
        _seconds(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        for c in status.get("containerStatuses") or []
    ]
    if ends and all(e is not None for e in ends):
        return max(e for e in ends if e is not None)
    return _seconds(status.get("startTime")) if done else None  # ended, time unknown: none


def pod_usage(pod: Mapping[str, Any], resource: str) -> PodUsage:
    """The GPU facts of one observed pod."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return PodUsage(
        revision=str((meta.get("labels") or {}).get(REVISION_LABEL, "")),
        gpus=_gpus(pod, resource),
        start=_seconds(status.get("startTime")),
        end=_end(pod),
        deleting=_seconds(meta.get("deletionTimestamp")),
    )


def live_gpu_seconds(cost: RevisionCost, now: float) -> float:
    """A revision's GPU-seconds at `now` (Unix seconds) from its status facts."""
    running = cost.running_gpus * now - cost.running_gpu_start_sum
    return cost.retired_gpu_seconds + cost.finished_gpu_seconds + max(0.0, running)


def revision_costs(
    pods: Iterable[Mapping[str, Any]],
    resource: str,
    retired: Mapping[str, int],
    stable: str | None,
    canary: str | None,
) -> list[RevisionCost] | None:
    """Status facts per revision: `retired` is the ledger's (newest last). None when the
    model has never used a GPU."""
    finished: dict[str, int] = {}
    running: dict[str, tuple[int, int]] = {}
    for pod in pods:
        use = pod_usage(pod, resource)
        if not use.gpus or use.start is None:
            continue
        if use.end is not None:
            finished[use.revision] = finished.get(use.revision, 0) + int(use.seconds(use.end))
        else:
            gpus, starts = running.get(use.revision, (0, 0))
            running[use.revision] = (gpus + use.gpus, starts + use.gpus * use.start)
    order = [r for r in (stable, canary) if r]
    order += sorted(r for r in {*running, *finished} if r not in order)
    order += [r for r in reversed(list(retired)) if r not in order]
    costs = []
    for revision in order[:MAX_REVISIONS]:
        gpus, starts = running.get(revision, (0, 0))
        seconds = (retired.get(revision, 0), finished.get(revision, 0), gpus)
        if not any(seconds):
            continue
        track = "stable" if revision == stable else "canary" if revision == canary else "retired"
        costs.append(
            RevisionCost(
                revision=revision,
                track=track,
                retired_gpu_seconds=seconds[0],
                finished_gpu_seconds=seconds[1],
                running_gpus=gpus,
                running_gpu_start_sum=starts,
            )
        )
    return costs or None


_Key = tuple[str, str]


def _key(model: Mapping[str, Any]) -> _Key:
    meta = model.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))


class CostLedger:
    """GPU-seconds of deleted pods per model and revision, between a pod's DELETED event
    and forever (through status). Thread-safe: the watch loop retires, workers and the
    metrics scrape read.

    A model's totals are seeded from its status the first time they are needed; from then
    on the ledger is the truth and status mirrors it, so a stale status never rolls it back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._retired: dict[_Key, OrderedDict[str, int]] = {}
        self._folded: dict[_Key, deque[str]] = {}

    def _seeded(self, model: Mapping[str, Any]) -> OrderedDict[str, int]:
        key = _key(model)
        totals = self._retired.get(key)
        if totals is None:
            totals = OrderedDict()
            # status lists newest retired last-to-first; the ledger keeps newest last
            for cost in reversed(((model.get("status") or {}).get("cost")) or []):
                if cost.get("retiredGpuSeconds"):
                    totals[str(cost["revision"])] = int(cost["retiredGpuSeconds"])
            self._retired[key] = totals
        return totals

    def retire(self, model: Mapping[str, Any], pod: Mapping[str, Any], now: float) -> int:
        """Fold a deleted pod in (once per pod UID); returns the GPU-seconds added."""
        uid = str((pod.get("metadata") or {}).get("uid", ""))
        use = pod_usage(pod, resource_name_of(model))
        seconds = int(use.seconds(math.floor(now)))
        with self._lock:
            folded = self._folded.setdefault(_key(model), deque(maxlen=_FOLDED_UIDS))
            if not seconds or uid in folded:
                return 0
            folded.append(uid)
            totals = self._seeded(model)
            totals[use.revision] = totals.pop(use.revision, 0) + seconds
            while len(totals) > MAX_REVISIONS:
                totals.popitem(last=False)
        return seconds

    def retired(self, model: Mapping[str, Any]) -> dict[str, int]:
        """The model's totals by revision, least recently retired first."""
        with self._lock:
            return dict(self._seeded(model))

    def forget(self, namespace: str, name: str) -> None:
        """The model is deleted: so are its costs."""
        with self._lock:
            self._retired.pop((namespace, name), None)
            self._folded.pop((namespace, name), None)

    def reset(self) -> None:
        """Re-seed every model from status (after standby, a peer may have moved them on)."""
        with self._lock:
            self._retired.clear()
