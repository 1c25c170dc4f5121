"""The status merge patch: what disappears anywhere in status is removed on the server."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import pytest
from kinfer_operator.naming import REVISION_LABEL, TRACK_LABEL
from kinfer_operator.reconcile.run import Reconciler, _status_patch
from kinfer_operator.world import WriteFailure
from support.clock import Clock
from support.factories import deep_merge, model_body
from support.fake_kube import FakeKube
from support.passes import condition, one_pass


def test_nested_keys_that_disappear_become_null() -> None:
    old = {"phase": "Canary", "rollout": {"step": 1, "stepStartedAt": "T", "weight": 25}}
    new = {"phase": "Canary", "rollout": {"step": 1, "weight": 50}}
    assert _status_patch(old, new) == {
        "phase": "Canary",
        "rollout": {"step": 1, "weight": 50, "stepStartedAt": None},
    }


def test_top_level_keys_that_disappear_become_null_and_lists_are_replaced() -> None:
    old = {"canaryRevision": "abc", "conditions": [{"type": "Ready"}, {"type": "Stalled"}]}
    new = {"conditions": [{"type": "Ready"}]}
    assert _status_patch(old, new) == {"conditions": [{"type": "Ready"}], "canaryRevision": None}


# -- whole passes against the in-memory API ------------------------------------------------


def _setup(spec: dict[str, Any] | None = None) -> tuple[FakeKube, Reconciler, Clock]:
    kube = FakeKube(model_body(spec))
    clock = Clock()
    return kube, Reconciler(kube, clock=clock.now, monotonic=clock.monotonic), clock


INVALID_REQUESTS = (
    'Deployment.apps "resnet50-x" is invalid: spec.template.spec.containers[0].resources'
    '.requests: Invalid value: "2": must be less than or equal to cpu limit of 1'
)


def _refuse_deployments(verb: str, obj: Mapping[str, Any]) -> WriteFailure | None:
    if verb == "apply" and obj["kind"] == "Deployment":
        return WriteFailure(
            "apply", "Deployment", obj["metadata"]["name"], 422, "Invalid", INVALID_REQUESTS
        )
    return None


def test_a_refused_child_shows_in_status_from_the_first_pass() -> None:
    kube, reconciler, _ = _setup()
    kube.refuse = _refuse_deployments
    one_pass(reconciler)
    status, reason, message = condition(kube, "Ready")
    assert (status, reason) == ("False", "ChildRejected")
    assert "resources.requests" in message and "422 Invalid" in message
    assert condition(kube, "Degraded")[:2] == ("True", "ChildRejected")
    assert kube.model["status"]["phase"] == "Failed"
    assert [(e.type, e.reason) for e in kube.events] == [("Warning", "ChildRejected")]
    assert ("Service", "resnet50") in kube.children  # the other children still converge


def test_a_refused_child_is_retried_with_capped_exponential_backoff() -> None:
    kube, reconciler, clock = _setup()
    kube.refuse = _refuse_deployments
    due = []
    for second in range(0, 600):  # a pass every second: watch events, resyncs
        clock.t = float(second)
        due.append(one_pass(reconciler).requeue_after)
    attempts = kube.writes[("apply", "Deployment")]
    assert attempts == 7  # at 0, 5, 15, 35, 75, 155 and 315 s; the cap is 300 s
    assert kube.writes[("patch-status", "InferenceModel")] == 1  # status written once
    assert len(kube.events) == 1
    assert due[0] == 5.0


def test_fixing_the_spec_recovers_on_the_next_pass() -> None:
    kube, reconciler, clock = _setup({"runtime": {"resources": {"limits": {"cpu": "1"}}}})
    kube.refuse = lambda verb, obj: (
        _refuse_deployments(verb, obj)
        if obj["kind"] == "Deployment"
        and "limits" in str(obj["spec"]["template"])
        and "'cpu': '1'" in str(obj["spec"]["template"])
        else None
    )
    one_pass(reconciler)
    assert condition(kube, "Ready")[1] == "ChildRejected"
    fixed = copy.deepcopy(kube.model["spec"])
    fixed["runtime"]["resources"]["limits"] = {"cpu": "4"}
    kube.set_spec(fixed)
    clock.t = 1.0  # well inside the backoff of the refused object
    one_pass(reconciler)
    assert len(kube.deployments()) == 1
    kube.settle()
    one_pass(reconciler)
    assert condition(kube, "Ready")[:2] == ("True", "Serving")
    assert condition(kube, "Degraded")[0] == "False"


def test_server_errors_are_retries_that_say_what_is_retried() -> None:
    kube, reconciler, _ = _setup()
    kube.refuse = lambda verb, obj: (
        WriteFailure(
            verb,
            "Service",
            "resnet50",
            500,
            "InternalError",
            "failed to allocate a serviceIP: range is full",
        )
        if obj["kind"] == "Service"
        else None
    )
    one_pass(reconciler)
    status, reason, message = condition(kube, "Ready")
    assert (status, reason) == ("False", "Retrying")
    assert "range is full" in message
    assert condition(kube, "Progressing")[:2] == ("True", "Retrying")
    assert condition(kube, "Degraded")[0] == "False"


def test_a_pass_that_breaks_still_leaves_status() -> None:
    kube, reconciler, _ = _setup()
    kube.observe_error = ConnectionError("connection refused")
    with pytest.raises(ConnectionError):
        reconciler.reconcile("ml", "resnet50")
    status, reason, message = condition(kube, "Ready")
    assert (status, reason) == ("False", "Retrying") and "connection refused" in message
    assert condition(kube, "Degraded")[0] == "False"


def test_pods_that_cannot_be_created_are_degraded_until_fixed() -> None:
    kube, reconciler, _ = _setup({"runtime": {"serviceAccountName": "runner"}})
    one_pass(reconciler)
    (deployment,) = kube.deployments()
    kube.fail_pod_creation(
        deployment["metadata"]["name"],
        'pods "x" is forbidden: error looking up service account ml/runner: '
        'serviceaccount "runner" not found',
    )
    one_pass(reconciler)
    assert condition(kube, "Ready")[:2] == ("False", "ServiceAccountNotFound")
    assert condition(kube, "Degraded")[:2] == ("True", "ServiceAccountNotFound")
    fixed = copy.deepcopy(kube.model["spec"])
    del fixed["runtime"]["serviceAccountName"]
    kube.set_spec(fixed)
    one_pass(reconciler)  # the new revision surges in next to the broken one
    kube.settle()
    one_pass(reconciler)  # promoted
    one_pass(reconciler)
    assert condition(kube, "Ready")[:2] == ("True", "Serving")
    assert len(kube.deployments()) == 1


ROLLOUT = {
    "rollout": {
        "canary": {"steps": [{"weight": 50, "pauseSeconds": 0}]},
        "analysis": {"errorRate": None},
    }
}


def _stable_then_canary(kube: FakeKube, reconciler: Reconciler, change: dict[str, Any]) -> None:
    one_pass(reconciler)
    kube.settle()
    one_pass(reconciler)
    assert condition(kube, "Ready")[:2] == ("True", "Serving")
    kube.set_spec(deep_merge(kube.model["spec"], change))


def test_a_refused_canary_is_rolled_back_with_the_reason() -> None:
    kube, reconciler, clock = _setup(ROLLOUT)
    _stable_then_canary(kube, reconciler, {"model": {"version": "4"}})
    stable = {d["metadata"]["name"] for d in kube.deployments()}
    kube.refuse = lambda verb, obj: (
        _refuse_deployments(verb, obj) if obj["metadata"]["name"] not in stable else None
    )
    one_pass(reconciler)
    assert condition(kube, "Degraded")[:2] == ("True", "ChildRejected")
    clock.t += 1
    one_pass(reconciler)
    rollout = kube.model["status"]["rollout"]
    assert rollout["phase"] == "RolledBack" and rollout["reason"] == "ChildRejected"
    assert "resources.requests" in rollout["message"]
    assert condition(kube, "Ready")[:2] == ("False", "RolledBack")
    assert "RolledBack" in [e.reason for e in kube.events]


def test_canary_pods_that_cannot_be_created_roll_the_canary_back() -> None:
    kube, reconciler, _ = _setup(ROLLOUT)
    _stable_then_canary(kube, reconciler, {"runtime": {"serviceAccountName": "runner"}})
    one_pass(reconciler)
    canary = next(d for d in kube.deployments() if d["metadata"]["labels"][TRACK_LABEL] == "canary")
    kube.fail_pod_creation(
        canary["metadata"]["name"],
        'pods "x" is forbidden: error looking up service account ml/runner: not found',
    )
    one_pass(reconciler)
    rollout = kube.model["status"]["rollout"]
    assert (rollout["phase"], rollout["reason"]) == ("RolledBack", "ServiceAccountNotFound")
    assert "error looking up service account" in rollout["message"]


def test_a_canary_waiting_for_a_secret_key_says_so_and_rolls_back_at_its_deadline() -> None:
    kube, reconciler, _ = _setup({**ROLLOUT, "model": {"uri": "https://m/x.onnx"}})
    creds = {"model": {"credentials": {"name": "hub", "key": "token"}}}
    _stable_then_canary(kube, reconciler, creds)
    one_pass(reconciler)
    canary = next(d for d in kube.deployments() if d["metadata"]["labels"][TRACK_LABEL] == "canary")
    waiting = {
        "reason": "CreateContainerConfigError",
        "message": "couldn't find key token in Secret ml/hub",
    }
    kube.pods = [
        {
            "metadata": {"name": "c-x", "labels": dict(canary["spec"]["selector"]["matchLabels"])},
            "status": {"containerStatuses": [{"state": {"waiting": waiting}}]},
        }
    ]
    one_pass(reconciler)
    status, reason, message = condition(kube, "Ready")
    assert (status, reason) == ("False", "InvalidSpec")
    assert message.startswith("spec.model.credentials: Secret 'hub' has no key 'token'")
    assert kube.model["status"]["rollout"]["phase"] == "Progressing"  # the Secret may come
    canary["status"] = {
        "observedGeneration": 1,
        "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    }
    one_pass(reconciler)
    rollout = kube.model["status"]["rollout"]
    assert (rollout["phase"], rollout["reason"]) == ("RolledBack", "InvalidSpec")
    assert rollout["message"] == "spec.model.credentials: Secret 'hub' has no key 'token'"


def test_a_full_rollout_emits_one_event_per_transition() -> None:
    kube, reconciler, _ = _setup()
    for _ in range(3):
        one_pass(reconciler)  # triggers that arrive before anything changed
    kube.settle(ready=False)
    one_pass(reconciler)
    kube.settle()
    for _ in range(3):
        one_pass(reconciler)
    kube.set_spec(deep_merge(kube.model["spec"], {"model": {"version": "4"}}))
    for _ in range(2):
        one_pass(reconciler)
    kube.settle()
    for _ in range(4):
        one_pass(reconciler)
    assert [e.reason for e in kube.events] == [
        "Deploying",
        "Serving",
        "RollingOut",
        "Promoted",
    ]


def test_a_canary_rollout_emits_one_event_per_transition() -> None:
    kube, reconciler, clock = _setup(ROLLOUT)
    _stable_then_canary(kube, reconciler, {"model": {"version": "4"}})
    for _ in range(3):
        clock.t += 1
        one_pass(reconciler)
        kube.settle()
    kube.model["metadata"]["annotations"] = {
        "serving.kinfer.io/promote": kube.model["status"]["rollout"]["revision"]
    }
    for _ in range(6):
        clock.t += 1
        one_pass(reconciler)
        kube.settle()
    assert kube.model["status"]["rollout"]["phase"] == "Succeeded"
    reasons = [e.reason for e in kube.events]
    assert reasons == [
        "Deploying",
        "Serving",
        "RolloutStarted",
        "Canary",
        "CanaryWeight",
        "Promoting",
        "Promoted",
    ]


def test_any_change_to_the_model_retries_a_refused_write_at_once() -> None:
    kube, reconciler, clock = _setup()
    kube.refuse = _refuse_deployments
    one_pass(reconciler)
    kube.refuse = lambda _verb, _obj: None  # e.g. a quota was raised
    kube.set_spec(deep_merge(kube.model["spec"], {"replicas": 3}))
    clock.t = 1.0
    one_pass(reconciler)
    assert len(kube.deployments()) == 1


def test_a_shadow_phase_mirrors_to_the_candidate_without_touching_stable() -> None:
    shadow = {"rollout": {**ROLLOUT["rollout"], "shadow": {"percent": 50}}}
    kube, reconciler, clock = _setup(shadow)
    _stable_then_canary(kube, reconciler, {"model": {"version": "4"}})
    (stable,) = kube.deployments()
    stable_revision = stable["metadata"]["labels"][REVISION_LABEL]
    for _ in range(3):
        clock.t += 1
        one_pass(reconciler)
        kube.settle()
    # The stable Deployment was never rewritten: its pods are not restarted for mirroring.
    assert kube.children[("Deployment", stable["metadata"]["name"])] == stable
    service = kube.children[("Service", "resnet50")]
    assert service["spec"]["selector"][REVISION_LABEL] == stable_revision
    shadow_ip = kube.children[("Service", "resnet50-shadow")]["spec"]["clusterIP"]
    config = json.loads(kube.children[("ConfigMap", "resnet50-shadow")]["data"]["mirror.json"])
    assert config["target"] == f"http://{shadow_ip}:8090" and config["percent"] == 50
    rollout = kube.model["status"]["rollout"]
    assert rollout["shadowPercent"] == 50 and rollout["weight"] == 0
    assert kube.model["status"]["canaryWeight"] == 0  # whatever the replica ratio
    assert "in shadow: stable mirrors 50%" in condition(kube, "Progressing")[2]
    assert "ShadowStarted" in [e.reason for e in kube.events]

    kube.model["metadata"]["annotations"] = {"serving.kinfer.io/abort": rollout["revision"]}
    for _ in range(8):  # the canary's pods are retired one per step (spec.rollout.retire)
        clock.t += 20  # past scaleDownDelaySeconds
        one_pass(reconciler)
        kube.settle()
    assert kube.model["status"]["rollout"]["phase"] == "RolledBack"
    assert REVISION_LABEL not in kube.children[("Service", "resnet50")]["spec"]["selector"]
    assert ("Service", "resnet50-shadow") not in kube.children
    config = json.loads(kube.children[("ConfigMap", "resnet50-shadow")]["data"]["mirror.json"])
    assert config == {}
    assert kube.deployments() == [stable]


def test_each_pass_is_a_span_naming_the_model_and_its_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kinfer_operator.reconcile import run
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(run, "_TRACER", provider.get_tracer("test"))
    kube, reconciler, _ = _setup()
    kube.refuse = _refuse_deployments
    one_pass(reconciler)
    (span,) = exporter.get_finished_spans()
    assert span.name == "reconcile"
    assert span.attributes is not None
    assert span.attributes["kinfer.model"] == kube.model["metadata"]["name"]
    assert span.attributes["k8s.namespace.name"] == kube.model["metadata"]["namespace"]
    assert span.attributes["kinfer.outcome"] == "ChildRejected"
