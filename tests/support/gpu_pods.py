"""GPU pods and models at fixed times, for the cost arithmetic's tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kinfer_operator.naming import MODEL_LABEL, REVISION_LABEL

T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
GPU = "nvidia.com/gpu"


def _at(offset: int) -> str:
    return datetime.fromtimestamp(T0 + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gpu_pod(
    revision: str,
    gpus: int | list[int] = 1,
    *,
    started: int | None = 0,
    finished: int | list[int] | None = None,
    phase: str | None = None,
    deleting: int | None = None,
    uid: str | None = None,
    resource: str = GPU,
) -> dict[str, Any]:
    """A pod of `revision` whose containers ask for `gpus`, started at T0 + `started`."""
    counts = gpus if isinstance(gpus, list) else [gpus]
    meta: dict[str, Any] = {
        "name": f"m-{revision}-{uid or 'x'}",
        "uid": uid or f"uid-{revision}",
        "labels": {MODEL_LABEL: "m", REVISION_LABEL: revision},
    }
    if deleting is not None:
        meta["deletionTimestamp"] = _at(deleting)
    status: dict[str, Any] = {"phase": phase or ("Running" if started is not None else "Pending")}
    if started is not None:
        status["startTime"] = _at(started)
    if finished is not None:
        ends = finished if isinstance(finished, list) else [finished] * len(counts)
        status["containerStatuses"] = [
            {"name": f"c{i}", "state": {"terminated": {"finishedAt": _at(end)}}}
            for i, end in enumerate(ends)
        ]
    containers = [{"resources": {"limits": {resource: str(n)}}} for n in counts]
    return {"metadata": meta, "spec": {"containers": containers}, "status": status}


def model(status_cost: list[dict[str, Any]] | None = None, resource: str = GPU) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"namespace": "ml", "name": "m", "uid": "u"},
        "spec": {"runtime": {"gpu": {"count": 1, "resourceName": resource}}},
    }
    if status_cost is not None:
        body["status"] = {"cost": status_cost}
    return body
