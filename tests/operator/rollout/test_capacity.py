"""decide() with spec.rollout.canary.capacity: a toy cluster applies each decision (pods start
one pass, are ready the next; scaled-away pods terminate for a pass), and the model's pod count
is checked at every moment against replicas + maxSurge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kinfer_operator.api.status import AnalysisRun, RolloutStatus
from kinfer_operator.children import build_deployment
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import revision_of
from kinfer_operator.rollout.machine import RolloutContext, RolloutDecision, decide
from kinfer_operator.world import Observed
from support.factories import model_body, observed_deployment, pod

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHORTAGE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
GATEWAY = {"mode": "GatewayAPI", "gateway": {"parentRefs": [{"name": "gw"}]}}


def _model(version: str, capacity: dict[str, Any], traffic: dict[str, Any] | None = None) -> Any:
    rollout: dict[str, Any] = {
        "canary": {
            "steps": [{"weight": 25, "pauseSeconds": 0}, {"weight": 50, "pauseSeconds": 0}],
            "progressDeadlineSeconds": 120,
            "scaleDownDelaySeconds": 0,
            "capacity": capacity,
        },
        "analysis": {"intervalSeconds": 10, "failureLimit": 1},
    }
    if traffic:
        rollout["traffic"] = traffic
    return InferenceModel.from_body(
        model_body({"replicas": 4, "rollout": rollout, "model": {"version": version}})
    )


class Track:
    """One revision's Deployment and its pods: 'starting', 'ready' or 'terminating'."""

    def __init__(self, model: InferenceModel, track: str, replicas: int) -> None:
        self.model, self.track, self.replicas = model, track, replicas
        self.pods = ["ready"] * replicas
        self.unschedulable = False

    def live(self) -> int:
        return sum(p != "terminating" for p in self.pods)

    def scale(self, replicas: int) -> None:
        self.replicas = replicas
        while self.live() < replicas:
            self.pods.append("starting")
        for state in ("starting", "ready"):
            while self.live() > replicas and state in self.pods:
                self.pods[self.pods.index(state)] = "terminating"

    def advance(self) -> None:
        after = "starting" if self.unschedulable else "ready"
        self.pods = [after if p == "starting" else p for p in self.pods if p != "terminating"]

    def deployment(self) -> dict[str, Any]:
        return observed_deployment(
            build_deployment(self.model, self.track),  # type: ignore[arg-type]
            replicas=self.replicas,
            ready=self.pods.count("ready"),
        )

    def pod_objects(self) -> list[dict[str, Any]]:
        revision = revision_of(self.model)
        out = []
        for i, state in enumerate(self.pods):
            message = SHORTAGE if state == "starting" and self.unschedulable else None
            p = pod("resnet50", revision, scheduled_message=message, phase="Running")
            p["metadata"]["name"] += str(i)
            if state == "terminating":
                p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            out.append(p)
        return out


class World:
    """A stable v3 at 4 replicas and the candidate v4, driven pass by pass."""

    def __init__(self, capacity: dict[str, Any], traffic: dict[str, Any] | None = None) -> None:
        self.model = _model("4", capacity, traffic)
        self.stable = Track(_model("3", capacity, traffic), "stable", 4)
        self.canary = Track(self.model, "canary", 0)
        self.previous: RolloutStatus | None = None
        self.now = T0
        self.verdicts: list[str] = []
        self.pod_counts: list[int] = []
        self.decisions: list[RolloutDecision] = []
        self.ready_seen: list[int] = []
        """Ready canary pods each pass saw."""
        self.stable_seen: list[int] = []

    def analyze(self, step: int) -> AnalysisRun:
        decision = self.verdicts.pop(0) if self.verdicts else "Pass"
        return AnalysisRun(
            time=self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            step=step,
            decision=decision,  # type: ignore[arg-type]
            message=f"fake {decision}",
        )

    def count(self) -> None:
        self.pod_counts.append(len(self.stable.pods) + len(self.canary.pods))

    def step(self, advance: float = 11) -> RolloutDecision:
        self.now += timedelta(seconds=advance)
        self.ready_seen.append(self.canary.pods.count("ready"))
        self.stable_seen.append(self.stable.pods.count("ready"))
        deployments = [self.stable.deployment()]
        if self.canary.replicas or self.canary.pods or self.previous is None:
            deployments.append(self.canary.deployment())
        observed = Observed(
            deployments=tuple(deployments),
            pods=(*self.stable.pod_objects(), *self.canary.pod_objects()),
        )
        d = decide(
            RolloutContext(
                model=self.model,
                observed=observed,
                previous=self.previous,
                stable=observed.views[0],
                total=4,
                now=self.now,
                annotations={},
                analyze=self.analyze,
            )
        )
        self.previous = d.status
        self.decisions.append(d)
        if d.promote:
            return d
        if d.stable_replicas is not None:
            self.stable.scale(d.stable_replicas)
        if d.canary_replicas is not None:
            self.canary.scale(d.canary_replicas)
        elif d.retire_others:
            self.canary.scale(0)
        self.count()  # right after the writes: new pods starting, old ones terminating
        self.canary.advance()
        self.count()
        self.stable.advance()
        self.count()
        return d

    def run(self, passes: int = 60) -> RolloutDecision:
        for _ in range(passes):
            d = self.step()
            status = d.status
            if d.promote or (status and status.phase == "RolledBack" and d.retire_others):
                return d
        raise AssertionError("the rollout did not finish")


def test_reuse_completes_a_canary_never_holding_more_than_replicas_plus_surge() -> None:
    world = World({"mode": "reuse", "maxSurge": 1})
    d = world.run()
    assert d.promote and d.status is not None and d.status.phase == "Succeeded"
    assert max(world.pod_counts) == 5
    assert world.canary.pods.count("ready") == 4
    assert world.stable.replicas <= 1  # the last one goes with the promotion
    weights = [x.status.weight for x in world.decisions if x.status is not None]
    assert 25 in weights and 50 in weights  # the moved share: 1/4 then 2/4


def test_surge_holds_replicas_plus_the_canary() -> None:
    world = World({"mode": "surge"})
    world.run()
    assert max(world.pod_counts) > 5  # the contrast: surge adds the canary on top


def test_reuse_with_a_larger_surge_moves_faster_within_its_bound() -> None:
    world = World({"mode": "reuse", "maxSurge": 2})
    world.run()
    assert max(world.pod_counts) <= 6


def test_reuse_rollback_moves_the_replicas_back_within_the_bound() -> None:
    world = World({"mode": "reuse", "maxSurge": 1})
    world.verdicts = ["Pass", "Fail"]
    d = world.run()
    assert d.status is not None and d.status.phase == "RolledBack"
    assert d.status.reason == "AnalysisFailed"
    assert max(world.pod_counts) <= 5
    assert (world.stable.replicas, world.stable.pods.count("ready")) == (4, 4)
    assert world.canary.live() == 0


def test_reuse_in_gateway_mode_routes_only_the_share_of_ready_moved_replicas() -> None:
    world = World({"mode": "reuse", "maxSurge": 1}, GATEWAY)
    world.run()
    seen = zip(world.decisions, world.ready_seen, world.stable_seen, strict=True)
    for d, canary_ready, stable_ready in seen:
        if d.promote:
            continue
        # Each ready pod carries at most its quarter, on either side of the route.
        assert d.route_weight <= 25 * canary_ready
        assert 100 - d.route_weight <= 25 * stable_ready


def test_surge_that_cannot_fit_says_so_once_and_suggests_reuse() -> None:
    world = World({"mode": "surge"})
    world.canary.unschedulable = True
    world.step()
    d = world.step()
    assert d.status is not None and d.status.phase == "Progressing"
    assert d.status.reason == "CanaryUnschedulable"
    assert "capacity.mode: reuse" in (d.status.message or "")
    d = world.step()
    told = [e for x in world.decisions for e in x.events if e.reason == "CanaryUnschedulable"]
    assert len(told) == 1 and told[0].type == "Warning"
    world.canary.unschedulable = False
    world.step()
    d = world.step()
    assert d.status is not None and d.status.reason is None


def test_surge_that_never_fits_rolls_back_at_the_deadline_as_gpu_unschedulable() -> None:
    world = World({"mode": "surge"})
    world.canary.unschedulable = True
    for _ in range(12):
        d = world.step()
    assert d.status is not None and d.status.phase == "RolledBack"
    assert d.status.reason == "GPUUnschedulable"


@pytest.mark.parametrize("surge", [1, 3])
def test_reuse_that_cannot_fit_even_the_surge_names_it(surge: int) -> None:
    world = World({"mode": "reuse", "maxSurge": surge})
    world.canary.unschedulable = True
    world.step()
    d = world.step()
    assert d.status is not None and d.status.reason == "CanaryUnschedulable"
    assert f"even {surge} pod(s)" in (d.status.message or "")
