"""decide(): the canary state machine, pass by pass, with a fake clock and fake analyses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kinfer_operator.api.status import AnalysisRun, RolloutStatus
from kinfer_operator.children import build_deployment
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import revision_of
from kinfer_operator.rollout.machine import (
    ABORT_ANNOTATION,
    PROMOTE_ANNOTATION,
    RETRY_ANNOTATION,
    RolloutContext,
    RolloutDecision,
    decide,
)
from kinfer_operator.world import Observed
from kinfer_operator.world.routes import RouteWait
from support.factories import model_body, observed_deployment, pod

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROLLOUT = {
    "canary": {
        "steps": [{"weight": 20, "pauseSeconds": 0}, {"weight": 50, "pauseSeconds": 0}],
        "progressDeadlineSeconds": 120,
        "scaleDownDelaySeconds": 10,
    },
    "analysis": {"intervalSeconds": 10, "failureLimit": 2, "errorLimit": 2},
}


def _model(version: str = "4", **spec: Any) -> InferenceModel:
    return InferenceModel.from_body(
        model_body({"replicas": 4, "rollout": ROLLOUT, "model": {"version": version}, **spec})
    )


class Scenario:
    """A stable v3 at 4 replicas and a canary v4 whose readiness the test controls."""

    def __init__(self, model: InferenceModel | None = None) -> None:
        self.model = model or _model()
        self.stable_model = _model("3")
        self.canary_ready = 0
        self.stable_available = 4
        self.previous: RolloutStatus | None = None
        self.now = T0
        self.runs: list[int] = []
        self.verdicts: list[str] = []
        self.annotations: dict[str, str] = {}
        self.route_problem: Callable[[int], RouteWait | None] = lambda _w: None
        self.pods: tuple[dict[str, Any], ...] = ()
        self.refused: str | None = None
        self.canary_trouble: dict[str, Any] = {}
        """observed_deployment keywords for the canary (replica_failure, deadline_exceeded)."""

    def analyze(self, step: int) -> AnalysisRun:
        self.runs.append(step)
        decision = self.verdicts.pop(0) if self.verdicts else "Pass"
        return AnalysisRun(
            time=self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            step=step,
            decision=decision,
            message=f"fake {decision}",
        )  # type: ignore[arg-type]

    def at_first_step(self) -> RolloutDecision:
        """Start the rollout and make the first canary replica ready (weight 20 applies)."""
        self.decide()
        self.canary_ready = 1
        return self.decide(1)

    def decide(self, advance: float = 0) -> RolloutDecision:
        self.now += timedelta(seconds=advance)
        stable = observed_deployment(
            build_deployment(self.stable_model, "stable"), replicas=4, ready=self.stable_available
        )
        deployments = [stable]
        if revision_of(self.model) != revision_of(self.stable_model):
            canary = observed_deployment(
                build_deployment(self.model, "canary"),
                replicas=max(self.canary_ready, 1),
                ready=self.canary_ready,
                **self.canary_trouble,
            )
            deployments.append(canary)
        observed = Observed(deployments=tuple(deployments), pods=self.pods)
        decision = decide(
            RolloutContext(
                model=self.model,
                observed=observed,
                previous=self.previous,
                stable=observed.views[0],
                total=4,
                now=self.now,
                annotations=self.annotations,
                analyze=self.analyze,
                route_problem=self.route_problem,
                refused=self.refused,
            )
        )
        self.previous = decision.status
        return decision


def test_canary_gets_no_traffic_until_ready() -> None:
    s = Scenario()
    d = s.decide()
    assert d.status is not None and d.status.phase == "Progressing"
    assert d.status.weight == 0 and d.route_weight == 0
    assert (d.canary_replicas, d.stable_replicas) == (1, 4)
    assert "RolloutStarted" in [e.reason for e in d.events]
    assert s.runs == []


def test_ready_canary_takes_step_weight_and_stable_shrinks_after() -> None:
    s = Scenario()
    s.decide()
    s.canary_ready = 1
    d = s.decide(1)
    assert d.status is not None and d.status.weight == 20
    assert d.stable_replicas == 3  # total stays 4: canary replicas came from stable
    assert d.status.step_started_at is not None
    assert "CanaryWeight" in [e.reason for e in d.events]


def test_analysis_runs_each_interval_and_passing_steps_advance_to_promotion() -> None:
    s = Scenario()
    s.at_first_step()
    d = s.decide(5)
    assert s.runs == []  # not due before a full interval at the weight
    d = s.decide(6)
    assert s.runs == [0] and d.status is not None and d.status.step == 1
    s.canary_ready = 2
    d = s.decide(1)
    assert d.status is not None and d.status.weight == 50
    d = s.decide(11)
    assert d.status is not None and d.status.phase == "Promoting"
    s.canary_ready = 4
    d = s.decide(1)
    assert d.promote and d.status is not None and d.status.phase == "Succeeded"
    assert "Promoted" in [e.reason for e in d.events]


def test_failures_at_the_limit_roll_back_and_restore_stable_first() -> None:
    s = Scenario()
    s.verdicts = ["Fail", "Fail"]
    s.at_first_step()
    d = s.decide(11)
    assert d.status is not None and d.status.phase == "Progressing" and d.status.failures == 1
    d = s.decide(11)
    assert d.status is not None and d.status.phase == "RolledBack"
    assert d.status.reason == "AnalysisFailed" and "fake Fail" in (d.status.message or "")
    assert d.route_weight == 0 and d.stable_replicas == 4
    assert d.canary_revision == revision_of(s.model) and not d.retire_others
    assert "RolledBack" in [e.reason for e in d.events]


def test_rolled_back_canary_goes_after_stable_is_whole_and_delay_passed() -> None:
    s = Scenario()
    s.annotations[ABORT_ANNOTATION] = revision_of(s.model)
    s.canary_ready = 1
    s.stable_available = 3
    d = s.decide()
    assert d.status is not None and d.status.reason == "ManualAbort"
    d = s.decide(20)
    assert not d.retire_others  # stable still at 3/4
    s.stable_available = 4
    d = s.decide(1)
    assert d.retire_others and d.canary_revision is None


def test_rolled_back_revision_is_not_retried_until_the_token_changes() -> None:
    s = Scenario()
    s.annotations[ABORT_ANNOTATION] = revision_of(s.model)
    s.decide()
    del s.annotations[ABORT_ANNOTATION]
    for _ in range(3):
        d = s.decide(30)
        assert d.status is not None and d.status.phase == "RolledBack"
    s.annotations[RETRY_ANNOTATION] = "1"
    d = s.decide(1)
    assert d.status is not None and d.status.phase == "Progressing" and d.status.step == 0
    assert "RolloutRetried" in [e.reason for e in d.events]


def test_inconclusive_holds_without_failing() -> None:
    s = Scenario()
    s.verdicts = ["Inconclusive"] * 3
    s.at_first_step()
    for _ in range(3):
        d = s.decide(11)
    assert d.status is not None
    assert (d.status.phase, d.status.step, d.status.failures) == ("Progressing", 0, 0)
    d = s.decide(11)  # traffic arrived: the next analysis passes
    assert d.status is not None and d.status.step == 1


def test_prometheus_errors_abort_at_error_limit_without_counting_failures() -> None:
    s = Scenario()
    s.verdicts = ["Error", "Error"]
    s.at_first_step()
    d = s.decide(11)
    assert d.status is not None and (d.status.errors, d.status.failures) == (1, 0)
    d = s.decide(11)
    assert d.status is not None and d.status.reason == "AnalysisUnavailable"


def test_consecutive_mode_resets_failures_on_a_pass_cumulative_does_not() -> None:
    for mode, expected in (("Consecutive", 0), ("Cumulative", 1)):
        rollout = {**ROLLOUT, "analysis": {**ROLLOUT["analysis"], "failureLimitMode": mode}}
        s = Scenario(_model(rollout=rollout))
        s.stable_model = _model("3", rollout=rollout)
        s.verdicts = ["Fail", "Pass"]
        s.at_first_step()
        s.decide(11)
        d = s.decide(11)
        assert d.status is not None and d.status.failures == expected, mode


def test_resumed_pass_does_not_repeat_an_analysis_or_a_step() -> None:
    s = Scenario()
    s.at_first_step()
    s.decide(11)
    assert s.runs == [0]
    saved = s.previous
    for _ in range(3):  # an operator restart re-runs passes from the same status
        s.previous = saved
        d = s.decide(0)
        assert d.status is not None and d.status.step == 1
    assert s.runs == [0]


def test_spec_change_mid_rollout_restarts_from_first_step() -> None:
    s = Scenario()
    s.at_first_step()
    s.decide(11)
    s.model = _model("5")
    s.canary_ready = 0
    d = s.decide(1)
    assert d.status is not None and d.status.revision == revision_of(s.model)
    assert (d.status.step, d.status.weight) == (0, 0)
    assert "RolloutRestarted" in [e.reason for e in d.events]


def test_reverting_spec_to_stable_supersedes_the_canary_without_analysis() -> None:
    s = Scenario()
    s.at_first_step()
    s.model = _model("3")
    d = s.decide(30)
    assert d.status is not None and d.status.phase == "Superseded"
    assert s.runs == []
    assert d.stable_replicas == 4


def test_manual_promote_skips_remaining_steps() -> None:
    s = Scenario()
    s.annotations[PROMOTE_ANNOTATION] = revision_of(s.model)
    d = s.decide()
    assert d.status is not None and d.status.phase == "Promoting"
    assert d.canary_replicas == 4
    s.canary_ready = 4
    assert s.decide(1).promote


def test_gpu_unschedulable_canary_waits_then_rolls_back_without_traffic() -> None:
    s = Scenario()
    shortage = "0/3 nodes are available: 2 Insufficient nvidia.com/gpu."
    s.pods = (pod("resnet50", revision_of(s.model), scheduled_message=shortage),)
    d = s.decide()
    d = s.decide(100)
    assert d.status is not None and d.status.phase == "Progressing" and d.route_weight == 0
    d = s.decide(30)
    assert d.status is not None and d.status.phase == "RolledBack"
    assert d.status.reason == "GPUUnschedulable" and "Insufficient" in (d.status.message or "")
    assert s.runs == []


def test_crashing_canary_rolls_back_as_model_load_failed() -> None:
    s = Scenario()
    crashed = pod(
        "resnet50",
        revision_of(s.model),
        containerStatuses=[
            {
                "name": "runtime",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "message": "bad model file"}},
            }
        ],
    )
    s.pods = (crashed,)
    d = s.decide()
    assert d.status is not None and d.status.reason == "ModelLoadFailed"
    assert "bad model file" in (d.status.message or "")


def test_analysis_time_counts_only_once_the_route_accepts_the_weight() -> None:
    s = Scenario()
    accepted = False
    s.route_problem = lambda _w: None if accepted else RouteWait("not programmed yet")
    s.decide()
    s.canary_ready = 1
    d = s.decide(1)
    assert d.status is not None and d.status.step_started_at is None and d.route_weight == 20
    assert d.status.route_message == "not programmed yet"
    assert not [e for e in d.events if e.reason == "RouteNotReady"]  # catching up: no Event
    d = s.decide(30)
    assert s.runs == []
    accepted = True
    d = s.decide(1)
    assert d.status is not None and d.status.step_started_at is not None


# --- the shadow phase (spec.rollout.shadow) --------------------------------------------------

SHADOW = {"percent": 25, "pauseSeconds": 30, "timeoutSeconds": 2, "maxQueue": 64}


def _shadow_model(shadow: dict[str, Any] | None = SHADOW) -> InferenceModel:
    rollout = {**ROLLOUT, "shadow": shadow} if shadow is not None else ROLLOUT
    return InferenceModel.from_body(
        model_body({"replicas": 4, "rollout": rollout, "model": {"version": "4"}})
    )


def test_shadow_phase_comes_first_with_no_user_traffic_and_stable_at_full_size() -> None:
    s = Scenario(_shadow_model())
    d = s.decide()
    assert d.status is not None and d.status.shadow_percent == 25
    assert d.status.step == 0 and d.status.weight == 0 and d.route_weight == 0
    # 25% of 4 replicas' traffic: one candidate replica, on top of all four stable ones.
    assert (d.canary_replicas, d.stable_replicas) == (1, 4)
    s.canary_ready = 1
    d = s.decide(1)
    assert d.status is not None and d.status.weight == 0 and d.stable_replicas == 4
    assert "ShadowStarted" in [e.reason for e in d.events]
    assert d.status.step_started_at is not None


def test_a_passed_shadow_phase_hands_over_to_the_first_canary_step() -> None:
    s = Scenario(_shadow_model())
    s.decide()
    s.canary_ready = 1
    s.decide(1)
    d = s.decide(10)  # analysis due, passes; the 30 s pause is not over yet
    assert d.status is not None and d.status.shadow_percent == 25
    assert s.runs == [0]
    d = s.decide(20)  # second analysis; pause over: the shadow phase ends
    assert d.status is not None and d.status.shadow_percent is None
    assert "ShadowPassed" in [e.reason for e in d.events]
    assert d.status.step == 0 and d.status.passed_at_step == 0
    d = s.decide(1)
    assert d.status is not None and d.status.weight == 20  # the first canary step's weight
    assert "CanaryWeight" in [e.reason for e in d.events]


def test_a_failing_shadow_is_rolled_back_before_any_user_saw_the_canary() -> None:
    s = Scenario(_shadow_model())
    s.decide()
    s.canary_ready = 1
    s.decide(1)
    s.verdicts = ["Fail", "Fail"]
    s.decide(10)
    d = s.decide(10)
    assert d.status is not None and d.status.phase == "RolledBack"
    assert d.status.reason == "AnalysisFailed"
    assert d.status.weight == 0
    # Kept: the Service stays pinned to stable until the candidate's pods are gone.
    assert d.status.shadow_percent == 25
    assert "RolledBack" in [e.reason for e in d.events]


def test_the_shadow_phase_uses_its_own_analysis() -> None:
    s = Scenario(_shadow_model())
    shadow_steps: list[int] = []
    s.decide()
    s.canary_ready = 1
    s.decide(1)
    original = s.analyze

    def shadow(step: int) -> Any:
        shadow_steps.append(step)
        return original(step)

    def live_must_not_run(step: int) -> Any:
        raise AssertionError("the live analysis ran in the shadow phase")

    # Drive one pass by hand with analyze_shadow set, as reconcile does.
    s.now += timedelta(seconds=10)
    stable = observed_deployment(build_deployment(s.stable_model, "stable"), replicas=4, ready=4)
    canary = observed_deployment(build_deployment(s.model, "canary"), replicas=1, ready=1)
    observed = Observed(deployments=(stable, canary))
    decide(
        RolloutContext(
            model=s.model,
            observed=observed,
            previous=s.previous,
            stable=observed.views[0],
            total=4,
            now=s.now,
            annotations={},
            analyze=live_must_not_run,
            analyze_shadow=shadow,
        )
    )
    assert shadow_steps == [0]


def test_removing_shadow_from_the_spec_mid_phase_moves_on_to_the_canary_steps() -> None:
    s = Scenario(_shadow_model())
    s.decide()
    s.canary_ready = 1
    s.decide(1)
    s.model = _shadow_model(shadow=None)
    d = s.decide(1)
    assert d.status is not None and d.status.shadow_percent is None
    assert d.status.weight == 20

    assert d.status.route_message is None


def test_route_a_gateway_refuses_holds_the_step_with_its_reason_and_one_event() -> None:
    s = Scenario()
    refused = RouteWait("gateway gw: ResolvedRefs=False BackendNotFound: no service", True)
    s.route_problem = lambda w: refused if w == 20 else None
    s.decide()
    s.canary_ready = 1
    first = s.decide(1)
    again = s.decide(30)
    assert again.status is not None and again.status.step_started_at is None
    assert again.status.route_message == refused.message and again.status.phase == "Progressing"
    assert [e.reason for e in first.events if e.reason == "RouteNotReady"] == ["RouteNotReady"]
    assert not [e for e in again.events if e.reason == "RouteNotReady"]  # once, not per pass
    assert s.runs == []


def test_weight_zero_step_runs_one_canary_replica_and_advances_after_its_pause_unanalysed() -> None:
    rollout = {
        **ROLLOUT,
        "canary": {
            **ROLLOUT["canary"],
            "steps": [{"weight": 0, "pauseSeconds": 30}, {"weight": 20, "pauseSeconds": 0}],
        },
        "traffic": {
            "mode": "GatewayAPI",
            "gateway": {"parentRefs": [{"name": "gw"}]},
            "pin": {},
        },
    }
    s = Scenario(_model(rollout=rollout))
    d = s.decide()
    assert d.canary_replicas == 1 and d.route_weight == 0 and d.pinned_only
    s.canary_ready = 1
    d = s.decide(1)
    assert d.status is not None and d.status.step == 0 and d.status.step_started_at is not None
    d = s.decide(29)
    assert d.status is not None and d.status.step == 0 and d.route_weight == 0
    assert d.canary_replicas == 1 and d.pinned_only
    d = s.decide(2)
    assert d.status is not None and d.status.step == 1
    assert d.pinned_only and d.route_weight == 0  # the weight in force until the next pass
    d = s.decide(1)
    assert d.status is not None and d.status.weight == 20 and not d.pinned_only
    assert s.runs == []  # only pinned requests reached it: nothing to analyse


def test_weight_is_not_raised_while_the_gateway_cannot_route_the_weight_in_force() -> None:
    s = Scenario()
    refused = RouteWait("gateway gw: ResolvedRefs=False BackendNotFound: no demo-canary", True)
    broken = True
    s.route_problem = lambda _w: refused if broken else None
    s.decide()
    s.canary_ready = 1
    d = s.decide(1)
    # The gateway answers 500 for an unresolved backend: no live traffic is moved onto it.
    assert d.status is not None and d.status.weight == 0 and d.route_weight == 0
    assert d.status.route_message == refused.message
    assert [e.reason for e in d.events if e.reason == "RouteNotReady"] == ["RouteNotReady"]
    broken = False
    d = s.decide(1)
    assert d.status is not None and d.status.weight == 20 and d.route_weight == 20
    assert d.status.route_message is None


# --- the named decisions of a pass in the steps, in the order they are asked ----------------


def _reasons(d: RolloutDecision) -> list[str]:
    return [e.reason for e in d.events]


def _paused_model(*pauses: int) -> InferenceModel:
    """Steps at 20, 50, ... percent with these pauses."""
    steps = [{"weight": w, "pauseSeconds": p} for w, p in zip((20, 50, 80), pauses, strict=False)]
    return _model(rollout={**ROLLOUT, "canary": {**ROLLOUT["canary"], "steps": steps}})


def test_abort_annotation_rolls_back_even_with_promote_set_and_a_ready_canary() -> None:
    s = Scenario()
    s.at_first_step()
    s.annotations[PROMOTE_ANNOTATION] = revision_of(s.model)
    s.annotations[ABORT_ANNOTATION] = revision_of(s.model)
    d = s.decide(11)
    assert d.status is not None
    assert (d.status.phase, d.status.reason) == ("RolledBack", "ManualAbort")
    assert "Promoting" not in _reasons(d) and d.route_weight == 0
    assert s.runs == []  # the analysis due at 11 s was not run


def test_promote_annotation_ends_the_shadow_phase_and_sizes_the_canary_for_all_traffic() -> None:
    s = Scenario(_shadow_model())
    s.decide()
    s.canary_ready = 1
    s.decide(1)
    s.annotations[PROMOTE_ANNOTATION] = revision_of(s.model)
    d = s.decide(1)
    assert d.status is not None
    assert (d.status.phase, d.status.reason) == ("Promoting", "ManualPromote")
    assert d.status.shadow_percent is None and "Promoting" in _reasons(d)
    assert d.canary_replicas == 4 and not d.promote  # one of four ready: not yet


def test_a_refused_canary_deployment_rolls_back_at_once_as_child_rejected() -> None:
    s = Scenario()
    s.decide()
    s.refused = 'Deployment "resnet50-v4" is invalid: spec.template: too long'
    d = s.decide(1)  # well inside the progress deadline: no waiting for the canary
    assert d.status is not None and d.status.phase == "RolledBack"
    assert (d.status.reason, d.status.message) == ("ChildRejected", s.refused)


def test_canary_pods_that_cannot_be_created_roll_back_with_the_controllers_reason() -> None:
    s = Scenario()
    s.decide()
    s.canary_trouble = {"replica_failure": 'pods "x" is forbidden: exceeded quota: gpus'}
    d = s.decide(1)
    assert d.status is not None and d.status.phase == "RolledBack"
    assert d.status.reason == "QuotaExceeded"
    assert "canary pods cannot be created: " in (d.status.message or "")


def test_removing_shadow_mid_phase_starts_the_first_step_with_a_fresh_analysis_slate() -> None:
    s = Scenario(_shadow_model())
    s.decide()
    s.canary_ready = 1
    s.decide(1)
    d = s.decide(10)  # one passed analysis on mirrored requests
    assert d.status is not None and d.status.passed_at_step == 1
    s.model = _shadow_model(shadow=None)
    d = s.decide(5)
    assert d.status is not None and d.status.shadow_percent is None
    assert (d.status.step, d.status.passed_at_step, d.status.weight) == (0, 0, 20)
    assert d.status.step_entered_at == s.now and d.status.step_started_at == s.now
    assert s.runs == [0]  # the step's own analysis is a full interval away
    assert d.requeue_after == 10


def test_a_canary_short_of_ready_replicas_holds_then_rolls_back_at_the_progress_deadline() -> None:
    s = Scenario()
    d = s.decide()
    assert d.status is not None and d.status.phase == "Progressing"
    assert d.requeue_after == 2.0 and d.stable_replicas == 4  # stable not shrunk for it
    d = s.decide(119.8)
    assert d.status is not None and d.status.phase == "Progressing"
    assert d.requeue_after == 0.5  # never sooner than half a second
    d = s.decide(0.3)
    assert d.status is not None and d.status.reason == "ProgressDeadlineExceeded"
    assert d.status.message == "canary had 0/1 ready replicas after 120s"


def test_promoting_waits_for_the_canary_at_full_size_then_promotes() -> None:
    s = Scenario()
    s.annotations[PROMOTE_ANNOTATION] = revision_of(s.model)
    s.decide()
    s.canary_ready = 3
    d = s.decide(1)
    assert d.status is not None and d.status.phase == "Promoting" and not d.promote
    assert (d.canary_replicas, d.route_weight) == (4, 0)
    s.canary_ready = 4
    d = s.decide(1)
    assert d.promote and d.route_weight == 100 and d.status is not None
    assert d.status.phase == "Succeeded"


def test_next_step_weight_waits_while_the_gateway_refuses_the_weight_in_force() -> None:
    s = Scenario()
    refused = RouteWait("gateway gw: ResolvedRefs=False BackendNotFound: no demo-canary", True)
    broken = False
    s.route_problem = lambda w: refused if broken and w == 20 else None
    s.at_first_step()
    s.canary_ready = 2
    broken = True
    d = s.decide(11)  # step 0 passes: step 1 (50%) is next
    assert d.status is not None and d.status.step == 1
    d = s.decide(1)
    assert d.status is not None and (d.status.weight, d.route_weight) == (20, 20)
    assert d.status.route_message == refused.message and "RouteNotReady" in _reasons(d)
    broken = False
    d = s.decide(1)
    assert d.status is not None and (d.status.weight, d.status.route_message) == (50, None)
    assert d.status.step_started_at == s.now and "CanaryWeight" in _reasons(d)


def test_route_not_at_weight_holds_the_step_and_runs_no_analysis() -> None:
    s = Scenario()
    s.route_problem = lambda _w: RouteWait("the HTTPRoute does not exist yet")
    s.decide()
    s.canary_ready = 1
    for _ in range(3):
        d = s.decide(30)
        assert d.status is not None and d.status.step_started_at is None
        assert d.route_weight == 20 and d.requeue_after == 2.0
        assert "CanaryWeight" not in _reasons(d)
    assert s.runs == []


def test_analysis_runs_once_an_interval_has_passed_and_the_next_is_an_interval_away() -> None:
    s = Scenario()
    s.verdicts = ["Inconclusive"]
    s.at_first_step()
    d = s.decide(4)
    assert s.runs == [] and d.requeue_after == 6  # due 10 s after the step started
    d = s.decide(6)
    assert s.runs == [0] and d.requeue_after == 10
    assert d.status is not None and d.status.last_analysis is not None
    assert d.status.last_analysis.decision == "Inconclusive"


def test_a_passed_step_waits_out_its_pause_before_the_next_step() -> None:
    s = Scenario(_paused_model(25, 0))
    s.at_first_step()
    d = s.decide(10)  # analysis passes; 15 s of the pause are left
    assert d.status is not None and (d.status.step, d.status.passed_at_step) == (0, 1)
    assert d.requeue_after == 10  # the next analysis comes before the pause ends
    d = s.decide(10)
    assert d.status is not None and d.status.step == 0 and d.requeue_after == 5
    d = s.decide(5)
    assert d.status is not None and (d.status.step, d.status.passed_at_step) == (1, 0)
    assert d.status.step_entered_at == s.now and d.requeue_after == 0.5


def test_passing_the_last_step_starts_promoting() -> None:
    s = Scenario(_paused_model(0))
    s.at_first_step()
    d = s.decide(11)
    assert d.status is not None
    assert (d.status.phase, d.status.reason) == ("Promoting", "AnalysisPassed")
    assert "Promoting" in _reasons(d) and not d.promote and d.requeue_after == 0.5
