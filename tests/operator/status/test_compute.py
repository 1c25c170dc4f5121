"""compute_status: conditions, phase and events from observed deployments and pods."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kinfer_operator.api.status import InferenceModelStatus
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import revision_of
from kinfer_operator.reconcile.plan import plan
from kinfer_operator.status import find_condition
from kinfer_operator.status.compute import compute_status, invalid_status
from kinfer_operator.world import Observed, WriteFailure
from support.factories import observed_deployment, pod

T = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T
T2 = T + timedelta(seconds=60)


MakeModel = Callable[..., InferenceModel]
GPU_SHORTAGE = "0/3 nodes are available: 2 Insufficient nvidia.com/gpu, 1 node(s) had taints."


def _status(
    model: InferenceModel,
    *,
    ready: int = 2,
    pods: tuple[dict[str, Any], ...] = (),
    previous: InferenceModelStatus | None = None,
    now: datetime = T,
    **deployment: Any,
):  # type: ignore[no-untyped-def]
    built = next(a for a in plan(model, Observed()).applies if a["kind"] == "Deployment")
    dep = observed_deployment(built, track="stable", ready=ready, **deployment)
    observed = Observed(deployments=(dep,), pods=pods)
    return compute_status(model, observed, plan(model, observed), previous, now=now)


def _cond(report: Any, type_: str) -> tuple[str, str]:
    c = find_condition(report.status.conditions, type_)
    assert c is not None
    return c.status, c.reason


def test_all_replicas_available_is_ready_and_not_progressing(make_model: MakeModel) -> None:
    model = make_model()
    report = _status(model)
    assert report.status.phase == "Ready"
    assert _cond(report, "Ready") == ("True", "Serving")
    assert _cond(report, "Available")[0] == "True"
    assert _cond(report, "Progressing") == ("False", "RolloutComplete")
    assert _cond(report, "Reconciling")[0] == "False"
    assert report.status.stable_revision == revision_of(model)
    assert report.status.stable_model_version == "3"
    assert report.status.selector is not None and revision_of(model) in report.status.selector


def test_partial_readiness_is_progressing(make_model: MakeModel) -> None:
    report = _status(make_model(), ready=1)
    assert report.status.phase == "Progressing"
    assert _cond(report, "Ready") == ("False", "Deploying")
    assert _cond(report, "Reconciling")[0] == "True"
    assert report.status.message is not None and "1/2" in report.status.message


def test_insufficient_gpu_is_a_wait_named_gpu_unschedulable(make_model: MakeModel) -> None:
    model = make_model()
    waiting = pod("resnet50", revision_of(model), scheduled_message=GPU_SHORTAGE)
    report = _status(model, ready=0, pods=(waiting,))
    assert _cond(report, "Ready") == ("False", "GPUUnschedulable")
    assert _cond(report, "Progressing") == ("True", "GPUUnschedulable")
    assert _cond(report, "Degraded")[0] == "False"
    assert report.status.phase == "Pending"
    assert any(e.reason == "GPUUnschedulable" and e.type == "Warning" for e in report.events)


def test_crashing_runtime_is_degraded_with_the_container_message(make_model: MakeModel) -> None:
    model = make_model()
    crashed = pod(
        "resnet50",
        revision_of(model),
        containerStatuses=[
            {
                "name": "runtime",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {
                    "terminated": {"exitCode": 1, "message": "sha256 mismatch for model.onnx"}
                },
            }
        ],
    )
    report = _status(model, ready=0, pods=(crashed,))
    assert _cond(report, "Degraded") == ("True", "ModelLoadFailed")
    assert _cond(report, "Stalled")[0] == "True"
    degraded = find_condition(report.status.conditions, "Degraded")
    assert degraded is not None and "sha256 mismatch" in degraded.message


def _killed(exit_code: int, reason: str = "Error", started: bool = False) -> dict[str, Any]:
    return {
        "name": "runtime",
        "started": started,
        "ready": False,
        "restartCount": 1,
        "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": exit_code, "reason": reason}},
    }


def test_startup_probe_kill_is_degraded_as_startup_timeout(make_model: MakeModel) -> None:
    model = make_model()
    killed = pod("resnet50", revision_of(model), containerStatuses=[_killed(137)])
    report = _status(model, ready=0, pods=(killed,))
    assert _cond(report, "Degraded") == ("True", "StartupTimeout")
    degraded = find_condition(report.status.conditions, "Degraded")
    assert degraded is not None and "startupTimeoutSeconds" in degraded.message
    assert "1 restart(s)" in degraded.message


def test_oom_kill_or_a_started_runtime_is_not_a_startup_timeout(make_model: MakeModel) -> None:
    model = make_model()
    for status in (_killed(137, reason="OOMKilled"), _killed(143, started=True)):
        report = _status(
            model, ready=0, pods=(pod("resnet50", revision_of(model), containerStatuses=[status]),)
        )
        assert _cond(report, "Degraded")[1] != "StartupTimeout"


def test_progress_deadline_without_ready_pods_is_model_load_failed(make_model: MakeModel) -> None:
    report = _status(make_model(), ready=0, deadline_exceeded=True)
    assert _cond(report, "Degraded") == ("True", "ModelLoadFailed")
    degraded = find_condition(report.status.conditions, "Degraded")
    assert degraded is not None and "startupTimeoutSeconds" in degraded.message


def test_steady_state_status_is_identical_and_emits_nothing(make_model: MakeModel) -> None:
    model = make_model()
    first = _status(model, now=T1)
    second = _status(model, previous=first.status, now=T2)
    assert second.status == first.status
    assert second.events == []


def test_becoming_ready_emits_a_normal_event(make_model: MakeModel) -> None:
    model = make_model()
    progressing = _status(model, ready=0, now=T1)
    ready = _status(model, previous=progressing.status, now=T2)
    assert [e.reason for e in ready.events] == ["Serving"]  # one transition, one Event
    cond = find_condition(ready.status.conditions, "Ready")
    assert cond is not None and cond.last_transition_time == T2


def test_conditions_carry_observed_generation(make_model: MakeModel) -> None:
    report = _status(make_model(generation=7))
    assert report.status.observed_generation == 7
    assert {c.observed_generation for c in report.status.conditions} == {7}


def test_invalid_spec_keeps_observed_fields_and_stalls() -> None:
    previous = InferenceModelStatus(replicas=2, ready_replicas=2, stable_revision="abc")
    report = invalid_status(previous, 3, "spec.model.uri: bad", now=T)
    assert report.status.phase == "Failed"
    assert report.status.replicas == 2 and report.status.stable_revision == "abc"
    ready = find_condition(report.status.conditions, "Ready")
    stalled = find_condition(report.status.conditions, "Stalled")
    assert ready is not None and ready.reason == "InvalidSpec"
    assert stalled is not None and stalled.status == "True"


def test_replica_split_during_a_surge_is_reported_as_approximate(make_model: MakeModel) -> None:
    old, new = make_model(), make_model({"model": {"version": "4"}})
    stable_built = next(a for a in plan(old, Observed()).applies if a["kind"] == "Deployment")
    stable = observed_deployment(stable_built, track="stable", ready=2)
    candidate_built = next(
        a for a in plan(new, Observed(deployments=(stable,))).applies if a["kind"] == "Deployment"
    )
    candidate = observed_deployment(candidate_built, track="canary", replicas=2, ready=1)
    observed = Observed(deployments=(stable, candidate))
    report = compute_status(new, observed, plan(new, observed), None, now=T)
    assert report.status.traffic_split == "Approximate"
    assert report.status.canary_weight == 33  # 1 ready canary pod of 3 ready in total
    assert report.status.canary_revision == revision_of(new)


def test_deploying_emits_one_event_not_one_per_condition(make_model: MakeModel) -> None:
    report = _status(make_model(), ready=0)
    assert [e.reason for e in report.events] == ["Deploying"]


REFUSED = WriteFailure(
    "apply",
    "Deployment",
    "resnet50-abc",
    422,
    "Invalid",
    'Deployment.apps "resnet50-abc" is invalid: spec.template.spec.containers[0].resources'
    '.requests: Invalid value: "2": must be less than or equal to cpu limit of 1',
)


def _with_failures(model: InferenceModel, *failures: WriteFailure, **kw: Any):  # type: ignore[no-untyped-def]
    observed = Observed()
    return compute_status(
        model, observed, plan(model, observed), kw.get("previous"), now=T, failures=failures
    )


def test_refused_child_is_degraded_quoting_the_api_server(make_model: MakeModel) -> None:
    report = _with_failures(make_model(), REFUSED)
    assert _cond(report, "Ready") == ("False", "ChildRejected")
    assert _cond(report, "Degraded") == ("True", "ChildRejected")
    assert _cond(report, "Stalled") == ("True", "ChildRejected")
    assert report.status.message is not None
    assert "resources.requests" in report.status.message and "422 Invalid" in report.status.message
    assert [(e.type, e.reason) for e in report.events] == [("Warning", "ChildRejected")]


def test_server_errors_are_retried_and_never_degraded(make_model: MakeModel) -> None:
    full = WriteFailure("apply", "Service", "resnet50", 500, "InternalError", "range is full")
    report = _with_failures(make_model(), full)
    assert _cond(report, "Ready") == ("False", "Retrying")
    assert _cond(report, "Progressing") == ("True", "Retrying")
    assert _cond(report, "Degraded") == ("False", "AsExpected")
    assert report.status.message is not None and "range is full" in report.status.message
    timeout = WriteFailure("apply", "Service", "resnet50", None, "ReadTimeoutError", "timed out")
    assert _cond(_with_failures(make_model(), timeout), "Degraded")[0] == "False"
    conflict = WriteFailure("scale", "Deployment", "x", 409, "Conflict", "modified")
    assert _cond(_with_failures(make_model(), conflict), "Degraded")[0] == "False"


def test_fixing_the_spec_recovers_from_a_refusal(make_model: MakeModel) -> None:
    model = make_model()
    refused = _with_failures(model, REFUSED)
    recovered = _status(model, previous=refused.status)
    assert _cond(recovered, "Ready") == ("True", "Serving")
    assert _cond(recovered, "Degraded") == ("False", "AsExpected")
    assert _cond(recovered, "Stalled")[0] == "False"


CREATE_FAILURES = [
    (
        'pods "m-1-x" is forbidden: error looking up service account ml/runner: '
        'serviceaccount "runner" not found',
        "ServiceAccountNotFound",
    ),
    (
        'pods "m-1-x" is forbidden: exceeded quota: gpus, requested: requests.nvidia.com/gpu=1, '
        "used: requests.nvidia.com/gpu=0, limited: requests.nvidia.com/gpu=0",
        "QuotaExceeded",
    ),
    (
        'pods "m-1-x" is forbidden: failed quota: cpu: must specify limits.cpu for: runtime',
        "QuotaExceeded",
    ),
    (
        'pods "m-1-x" is forbidden: violates PodSecurity "restricted:latest": hostPort',
        "PodSecurityViolation",
    ),
    (
        'pods "m-1-x" is forbidden: maximum cpu usage per Container is 1, but limit is 2',
        "LimitRangeViolation",
    ),
    (
        'pods "m-1-x" is forbidden: no PriorityClass with name urgent was found',
        "PriorityClassNotFound",
    ),
    ('admission webhook "deny.example.com" denied the request: no', "PodCreationFailed"),
]


@pytest.mark.parametrize(
    ("message", "reason"),
    CREATE_FAILURES,
    ids=["sa", "quota", "quota-limits", "psa", "limitrange", "priority", "other"],
)
def test_pods_that_cannot_be_created_are_degraded_with_a_reason_per_cause(
    make_model: MakeModel, message: str, reason: str
) -> None:
    report = _status(make_model(), ready=0, replica_failure=message)
    assert _cond(report, "Ready") == ("False", reason)
    assert _cond(report, "Degraded") == ("True", reason)
    assert report.status.phase == "Degraded"
    assert report.status.message is not None and message in report.status.message
    assert [(e.type, e.reason) for e in report.events] == [("Warning", reason)]


def _config_error(model: InferenceModel, message: str) -> dict[str, Any]:
    waiting = {"reason": "CreateContainerConfigError", "message": message}
    return pod(
        "resnet50",
        revision_of(model),
        containerStatuses=[{"name": "runtime", "state": {"waiting": waiting}}],
    )


def test_a_missing_credentials_key_is_invalid_spec_naming_secret_and_key(
    make_model: MakeModel,
) -> None:
    model = make_model({"model": {"credentials": {"name": "hub", "key": "token"}}})
    blocked = _config_error(model, "couldn't find key token in Secret ml/hub")
    report = _status(model, ready=0, pods=(blocked,))
    assert _cond(report, "Ready") == ("False", "InvalidSpec")
    assert _cond(report, "Stalled") == ("True", "InvalidSpec")
    assert report.status.phase == "Failed"
    ready = find_condition(report.status.conditions, "Ready")
    assert ready is not None
    assert ready.message.startswith("spec.model.credentials: Secret 'hub' has no key 'token'")
    assert revision_of(model) in ready.message


def test_a_config_error_not_about_a_secret_is_not_invalid_spec(make_model: MakeModel) -> None:
    model = make_model({"model": {"credentials": {"name": "hub", "key": "token"}}})
    blocked = _config_error(model, "container has runAsNonRoot and image will run as root")
    report = _status(model, ready=0, pods=(blocked,))
    assert _cond(report, "Ready") == ("False", "Deploying")


def test_grpc_route_condition_follows_the_gateway_and_the_crd(make_model: MakeModel) -> None:
    from kinfer_operator.children.grpcroute import build_grpcroute

    traffic = {"mode": "GatewayAPI", "gateway": {"parentRefs": [{"name": "gw"}]}}
    model = make_model({"rollout": {"canary": {"steps": [{"weight": 10}]}, "traffic": traffic}})
    built = next(a for a in plan(model, Observed()).applies if a["kind"] == "Deployment")
    dep = observed_deployment(built, track="stable", ready=2)

    def grpc_routed(**observed: Any) -> tuple[str, str]:
        world = Observed(deployments=(dep,), **observed)
        report = compute_status(model, world, plan(model, world), None, now=T)
        assert _cond(report, "Ready") == ("True", "Serving")  # HTTP serving never depends on it
        return _cond(report, "GRPCRouted")

    assert grpc_routed(grpc_routes_served=False) == ("False", "GRPCRouteUnsupported")
    assert grpc_routed() == ("Unknown", "GRPCRoutePending")
    route = {**build_grpcroute(model, 0), "status": {"parents": [{"parentRef": {"name": "gw"}}]}}
    verdicts = [("Accepted", "True"), ("ResolvedRefs", "False")]
    route["status"]["parents"][0]["conditions"] = [
        {"type": t, "status": s, "reason": "BackendNotFound"} for t, s in verdicts
    ]
    assert grpc_routed(grpc_routes=(route,)) == ("False", "GRPCRouteNotAccepted")
    route["status"]["parents"][0]["conditions"][1]["status"] = "True"
    assert grpc_routed(grpc_routes=(route,)) == ("True", "Routed")
    # Not GatewayAPI: no such condition.
    report = _status(make_model())
    assert find_condition(report.status.conditions, "GRPCRouted") is None


def test_a_canary_that_cannot_fit_is_degraded_as_canary_unschedulable(
    make_model: MakeModel,
) -> None:
    from kinfer_operator.api.status import RolloutStatus
    from kinfer_operator.rollout.machine import RolloutDecision

    old, new = make_model(), make_model({"model": {"version": "4"}})
    stable_built = next(a for a in plan(old, Observed()).applies if a["kind"] == "Deployment")
    observed = Observed(deployments=(observed_deployment(stable_built, track="stable"),))
    waiting = RolloutStatus(
        phase="Progressing",
        revision=revision_of(new),
        steps=2,
        started_at=T,
        model_version="4",
        from_revision="stable",
        reason="CanaryUnschedulable",
        message="canary cannot be scheduled: Insufficient nvidia.com/gpu; set ... reuse",
    )
    report = compute_status(
        new, observed, plan(new, observed), None, now=T, rollout=RolloutDecision(status=waiting)
    )
    assert _cond(report, "Progressing") == ("False", "CanaryUnschedulable")
    assert _cond(report, "Degraded") == ("True", "CanaryUnschedulable")
    assert _cond(report, "Stalled")[0] == "False"  # the progress deadline still decides
    moving = waiting.model_copy(update={"reason": None, "message": None})
    report = compute_status(
        new, observed, plan(new, observed), None, now=T, rollout=RolloutDecision(status=moving)
    )
    assert _cond(report, "Degraded") == ("False", "AsExpected")
