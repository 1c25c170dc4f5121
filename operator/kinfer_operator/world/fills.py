"""What the observed world says about the model cache's fill Jobs.

Progress comes from the fill pod's log, which the pass tails only while a fill Job is active
(see `reconcile.cluster.CachedCluster.observe`): the downloader needs no credentials to
report it, and a pass with every version cached reads nothing extra.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kinfer_operator import runtime_contract as rc
from kinfer_operator.references import CONFIG_ERROR
from kinfer_operator.world.observed import Observed

__all__ = ["FillState", "fill_state", "progress_message"]

_PROGRESS = re.compile(rf"{rc.PROGRESS_PREFIX} done=(\d+) total=(\d+|\?)")
_MIB = 2**20


@dataclass(frozen=True)
class FillState:
    """Where the fill of one version stands."""

    job: str
    phase: Literal["Filling", "Blocked", "Filled", "Failed"]
    message: str
    """Blocked: the fill pod cannot start (the kubelet's message, e.g. a missing Secret);
    the kubelet retries, so it fills once the cause is fixed."""


def progress_message(log_tail: str | None) -> str:
    """`Downloading model 412/1024 MiB` from the fill's last progress line."""
    matches = _PROGRESS.findall(log_tail or "")
    if not matches:
        return "Downloading model"
    done, total = matches[-1]
    # Whole MiB as in `412/1024 MiB`; a tenth for models under 10 MiB, so they move too.
    digits = 1 if total != "?" and int(total) < 10 * _MIB else 0
    shown_total = f"{int(total) / _MIB:.{digits}f}" if total != "?" else "?"
    return f"Downloading model {int(done) / _MIB:.{digits}f}/{shown_total} MiB"


def _condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _pod_message(observed: Observed, job_name: str) -> str | None:
    """The fill container's termination message (the fill's own summary or error)."""
    for pod in observed.pods:
        if (pod.get("metadata", {}).get("labels") or {}).get("job-name") != job_name:
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            if terminated.get("message"):
                return str(terminated["message"]).strip()
    return None


def _config_error(observed: Observed, job_name: str) -> str | None:
    """The kubelet's message when the fill container cannot be created from its spec."""
    for pod in observed.pods:
        if (pod.get("metadata", {}).get("labels") or {}).get("job-name") != job_name:
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == CONFIG_ERROR:
                return str(waiting.get("message") or CONFIG_ERROR)
    return None


def fill_state(observed: Observed, job_name: str) -> FillState | None:
    """The state of a fill Job; None when it does not exist."""
    job = observed.find("Job", job_name)
    if job is None:
        return None
    if _condition(job, "Complete") is not None:
        return FillState(job_name, "Filled", _pod_message(observed, job_name) or "cached")
    failed = _condition(job, "Failed")
    if failed is not None:
        detail = _pod_message(observed, job_name) or str(
            failed.get("message") or failed.get("reason") or "failed"
        )
        return FillState(job_name, "Failed", f"cache-fill Job {job_name} failed: {detail}")
    blocked = _config_error(observed, job_name)
    if blocked is not None:
        return FillState(job_name, "Blocked", blocked)
    return FillState(job_name, "Filling", progress_message(observed.fill_logs.get(job_name)))
