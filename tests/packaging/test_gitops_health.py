"""Argo CD's Lua health check and Flux's kstatus give the right answer on real statuses.

The statuses come from the operator's own compute_status/invalid_status. The Lua runs in Lua
5.1 (lupa), the dialect of Argo CD's gopher-lua. Flux has no hook to test: it applies kstatus,
re-implemented below from sigs.k8s.io/cli-utils pkg/kstatus/status/generic.go (the generic
rules; InferenceModel has no type-specific ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import revision_of
from kinfer_operator.reconcile.plan import plan
from kinfer_operator.status import StatusReport, compute_status, invalid_status
from kinfer_operator.world import Observed
from lupa.lua51 import LuaRuntime
from support.factories import model_body, observed_deployment, pod

ARGOCD = Path(__file__).resolve().parents[2] / "examples" / "gitops" / "argocd"
HEALTH_LUA = (ARGOCD / "inferencemodel-health.lua").read_text()
GPU_SHORTAGE = "0/3 nodes are available: 2 Insufficient nvidia.com/gpu, 1 node(s) had taints."
NOW = "2026-01-01T00:00:00Z"


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the health Lua the way Argo CD does: `obj` in scope, a {status, message} table out."""
    lua = LuaRuntime()
    check = lua.eval(f"function(obj)\n{HEALTH_LUA}\nend")
    result = check(lua.table_from(obj, recursive=True))
    return str(result["status"]), str(result["message"])


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus's generic rules, as Flux applies them to a resource it waits for."""
    if obj["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed != obj["metadata"].get("generation"):
        return "InProgress"
    for condition in status.get("conditions") or []:
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return "InProgress"
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return "Failed"
    return "Current"


def _model() -> InferenceModel:
    return InferenceModel.from_body(model_body())


def _report(ready: int, pods: tuple[dict[str, Any], ...] = ()) -> StatusReport:
    model = _model()
    built = next(a for a in plan(model, Observed()).applies if a["kind"] == "Deployment")
    deployment = observed_deployment(built, track="stable", ready=ready)
    observed = Observed(deployments=(deployment,), pods=pods)
    return compute_status(model, observed, plan(model, observed), None, now=NOW)


def _object(report: StatusReport | None, generation: int = 1) -> dict[str, Any]:
    body = model_body(generation=generation)
    if report is not None:
        # Exactly what the operator patches onto the status subresource.
        body["status"] = report.status.model_dump(by_alias=True, exclude_none=True)
    return body


def _crashed_pod() -> dict[str, Any]:
    return pod(
        "resnet50",
        revision_of(_model()),
        containerStatuses=[
            {
                "name": "runtime",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "message": "sha256 mismatch"}},
            }
        ],
    )


def _gpu_waiting_pod() -> dict[str, Any]:
    return pod("resnet50", revision_of(_model()), scheduled_message=GPU_SHORTAGE)


CASES = {
    "ready": (lambda: _object(_report(ready=2)), "Healthy", "Current"),
    "partially-ready": (lambda: _object(_report(ready=1)), "Progressing", "InProgress"),
    "gpu-unschedulable": (
        lambda: _object(_report(ready=0, pods=(_gpu_waiting_pod(),))),
        "Progressing",
        "InProgress",
    ),
    "model-load-failed": (
        lambda: _object(_report(ready=0, pods=(_crashed_pod(),))),
        "Degraded",
        "Failed",
    ),
    "invalid-spec": (
        lambda: _object(invalid_status(None, 1, "spec.model.credentials: not found", now=NOW)),
        "Degraded",
        "Failed",
    ),
    # A Ready status written for generation 1 says nothing about generation 2's spec.
    "stale-generation": (
        lambda: _object(_report(ready=2), generation=2),
        "Progressing",
        "InProgress",
    ),
    # kstatus cannot tell "no status yet" from "a type without status": Flux would see Current
    # for the moment before the operator's first status write; Argo CD waits.
    "no-status-yet": (lambda: _object(None), "Progressing", "Current"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_argocd_and_flux_read_operator_status_as_documented(case: str) -> None:
    make, argocd_expected, kstatus_expected = CASES[case]
    obj = make()
    status, message = argocd_health(obj)
    assert (status, kstatus(obj)) == (argocd_expected, kstatus_expected), message


def test_argocd_message_names_the_reason_and_the_runtime_error() -> None:
    _, message = argocd_health(_object(_report(ready=0, pods=(_crashed_pod(),))))
    assert message.startswith("ModelLoadFailed: ") and "sha256 mismatch" in message


def test_argocd_cm_embeds_the_tested_lua_verbatim() -> None:
    configmap = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    key = "resource.customizations.health.serving.kinfer.io_InferenceModel"
    assert configmap["data"][key] == HEALTH_LUA
