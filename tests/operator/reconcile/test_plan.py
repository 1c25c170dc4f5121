"""plan(): children, surge-and-promote across revisions, and who owns replicas."""

from __future__ import annotations

from collections.abc import Callable

from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import TRACK_LABEL, deployment_name, revision_of
from kinfer_operator.reconcile.plan import Delete, Scale, needs_apply, plan
from kinfer_operator.world import Observed
from support.factories import observed_deployment

MakeModel = Callable[..., InferenceModel]


def _kinds(p: object) -> list[str]:
    return [a["kind"] for a in p.applies]  # type: ignore[attr-defined]


def _deployment(p: object) -> dict:  # type: ignore[type-arg]
    return next(a for a in p.applies if a["kind"] == "Deployment")  # type: ignore[attr-defined]


def test_first_pass_creates_stable_deployment_service_and_pdb(make_model: MakeModel) -> None:
    model = make_model()
    p = plan(model, Observed())
    assert sorted(_kinds(p)) == ["Deployment", "PodDisruptionBudget", "Service"]
    assert _deployment(p)["metadata"]["labels"][TRACK_LABEL] == "stable"
    assert p.scales == [Scale(deployment_name(model, revision_of(model)), 2)]
    assert p.deletes == [] and p.candidate_revision is None


def test_steady_state_needs_no_apply(make_model: MakeModel) -> None:
    model = make_model()
    first = plan(model, Observed())
    observed = Observed(
        deployments=(observed_deployment(_deployment(first), track="stable"),),
        services=tuple(a for a in first.applies if a["kind"] == "Service"),
        pdbs=tuple(a for a in first.applies if a["kind"] == "PodDisruptionBudget"),
    )
    again = plan(model, observed)
    assert not any(
        needs_apply(a, observed.find(a["kind"], a["metadata"]["name"])) for a in again.applies
    )


def test_unstamped_or_changed_child_needs_apply(make_model: MakeModel) -> None:
    desired = _deployment(plan(make_model(), Observed()))
    assert needs_apply(desired, None)
    assert needs_apply(desired, observed_deployment(desired, stamped=False))


def test_new_revision_is_surged_in_next_to_stable(make_model: MakeModel) -> None:
    old = make_model()
    stable = observed_deployment(_deployment(plan(old, Observed())), track="stable")
    new = make_model({"model": {"version": "4"}})
    p = plan(new, Observed(deployments=(stable,)))
    assert p.candidate_revision == revision_of(new)
    assert p.serving_revision == revision_of(old)
    assert _deployment(p)["metadata"]["labels"][TRACK_LABEL] == "canary"
    assert p.deletes == []
    assert Scale(deployment_name(new, revision_of(new)), 2) in p.scales


def test_candidate_is_promoted_only_when_fully_available(make_model: MakeModel) -> None:
    old, new = make_model(), make_model({"model": {"version": "4"}})
    stable = observed_deployment(_deployment(plan(old, Observed())), track="stable")
    built = _deployment(plan(new, Observed(deployments=(stable,))))
    half = observed_deployment(built, track="canary", replicas=2, ready=1)
    assert not plan(new, Observed(deployments=(stable, half))).promoted

    full = observed_deployment(built, track="canary", replicas=2, ready=2)
    p = plan(new, Observed(deployments=(stable, full)))
    assert p.promoted and p.candidate_revision is None
    assert _deployment(p)["metadata"]["labels"][TRACK_LABEL] == "stable"
    assert p.deletes == [Delete("Deployment", stable["metadata"]["name"])]


def test_promotion_relabels_without_touching_annotations(make_model: MakeModel) -> None:
    # A Deployment's generation moves with its annotations: a new hash on promotion would make
    # the pass after it see the promoted revision as not rolled out (Ready flapping).
    old, new = make_model(), make_model({"model": {"version": "4"}})
    stable = observed_deployment(_deployment(plan(old, Observed())), track="stable")
    canary = observed_deployment(
        _deployment(plan(new, Observed(deployments=(stable,)))), track="canary"
    )
    p = plan(new, Observed(deployments=(stable, canary)))
    promoted = _deployment(p)
    assert p.promoted
    assert promoted["metadata"]["annotations"] == canary["metadata"]["annotations"]
    assert needs_apply(promoted, canary)  # the label still has to change
    relabelled = observed_deployment(promoted, track="stable")
    assert not needs_apply(promoted, relabelled)


def test_reverting_to_stable_cancels_the_candidate(make_model: MakeModel) -> None:
    old, new = make_model(), make_model({"model": {"version": "4"}})
    stable = observed_deployment(_deployment(plan(old, Observed())), track="stable")
    candidate = observed_deployment(
        _deployment(plan(new, Observed(deployments=(stable,)))), track="canary", ready=0
    )
    p = plan(old, Observed(deployments=(stable, candidate)))
    assert p.candidate_revision is None and not p.promoted
    assert p.deletes == [Delete("Deployment", candidate["metadata"]["name"])]


def test_autoscaling_never_scales_the_hpa_owned_deployment(make_model: MakeModel) -> None:
    model = make_model({"replicas": None, "autoscaling": {"minReplicas": 2, "maxReplicas": 5}})
    first = plan(model, Observed())
    stable = observed_deployment(_deployment(first), track="stable", replicas=4)
    p = plan(model, Observed(deployments=(stable,)))
    assert p.scales == []
    hpa = next(a for a in p.applies if a["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == stable["metadata"]["name"]
    assert p.want_replicas == 4


def test_candidate_under_autoscaling_gets_stable_capacity(make_model: MakeModel) -> None:
    spec = {"replicas": None, "autoscaling": {"minReplicas": 2, "maxReplicas": 8}}
    old = make_model(spec)
    new = make_model({**spec, "model": {"version": "4"}})
    stable = observed_deployment(_deployment(plan(old, Observed())), track="stable", replicas=5)
    p = plan(new, Observed(deployments=(stable,)))
    assert p.scales == [Scale(deployment_name(new, revision_of(new)), 5)]


def test_dropping_autoscaling_deletes_the_hpa(make_model: MakeModel) -> None:
    scaled = make_model({"replicas": None, "autoscaling": {"maxReplicas": 5}})
    hpa = next(
        a for a in plan(scaled, Observed()).applies if a["kind"] == "HorizontalPodAutoscaler"
    )
    p = plan(make_model(), Observed(hpas=(hpa,)))
    assert Delete("HorizontalPodAutoscaler", hpa["metadata"]["name"]) in p.deletes


def test_scaling_to_one_removes_the_pdb(make_model: MakeModel) -> None:
    pdb = next(
        a for a in plan(make_model(), Observed()).applies if a["kind"] == "PodDisruptionBudget"
    )
    p = plan(make_model({"replicas": 1}), Observed(pdbs=(pdb,)))
    assert Delete("PodDisruptionBudget", pdb["metadata"]["name"]) in p.deletes
    assert "PodDisruptionBudget" not in _kinds(p)


def test_rollout_decision_sizes_both_tracks_and_keeps_old_stable(make_model: MakeModel) -> None:
    from kinfer_operator.rollout.machine import RolloutDecision

    rollout = {"canary": {"stepWeight": 25, "maxWeight": 50}}
    old = make_model({"rollout": rollout, "replicas": 4})
    new = make_model({"rollout": rollout, "replicas": 4, "model": {"version": "4"}})
    stable = observed_deployment(_deployment(plan(old, Observed())), track="stable", replicas=4)
    decision = RolloutDecision(
        status=None, canary_revision=revision_of(new), canary_replicas=1, stable_replicas=3
    )
    p = plan(new, Observed(deployments=(stable,)), decision)
    assert _deployment(p)["metadata"]["labels"][TRACK_LABEL] == "canary"
    assert Scale(stable["metadata"]["name"], 3) in p.scales
    assert Scale(deployment_name(new, revision_of(new)), 1) in p.scales
    assert p.deletes == []


def test_rollout_promotion_relabels_canary_and_retires_old_stable(make_model: MakeModel) -> None:
    from kinfer_operator.rollout.machine import RolloutDecision

    rollout = {"canary": {"stepWeight": 25, "maxWeight": 50}}
    old = make_model({"rollout": rollout})
    new = make_model({"rollout": rollout, "model": {"version": "4"}})
    stable = observed_deployment(_deployment(plan(old, Observed())), track="stable")
    decision = RolloutDecision(
        status=None, canary_revision=revision_of(new), promote=True, retire_others=True
    )
    p = plan(new, Observed(deployments=(stable,)), decision)
    assert p.promoted and _deployment(p)["metadata"]["labels"][TRACK_LABEL] == "stable"
    assert p.deletes == [Delete("Deployment", stable["metadata"]["name"])]


def test_gateway_mode_adds_track_services_and_route(make_model: MakeModel) -> None:
    rollout = {
        "canary": {"stepWeight": 25, "maxWeight": 50},
        "traffic": {"mode": "GatewayAPI", "gateway": {"parentRefs": [{"name": "gw"}]}},
    }
    p = plan(make_model({"rollout": rollout}), Observed())
    names = sorted(
        a["metadata"]["name"] for a in p.applies if a["kind"] in {"Service", "HTTPRoute"}
    )
    assert names == ["resnet50", "resnet50", "resnet50-canary", "resnet50-stable"]


def _service_selector(p: object) -> dict[str, str]:
    service = next(
        a
        for a in p.applies  # type: ignore[attr-defined]
        if a["kind"] == "Service"
        and TRACK_LABEL not in a["metadata"]["labels"]
        and a["metadata"]["name"] == "resnet50"
    )
    return dict(service["spec"]["selector"])


def _canary_pass(make_model: MakeModel, traffic: dict, weight: int, pinned_only: bool) -> object:  # type: ignore[type-arg]
    from kinfer_operator.rollout.machine import RolloutDecision

    steps = [{"weight": 0}, {"weight": 10}] if "pin" in traffic else [{"weight": 10}]
    rollout = {"canary": {"steps": steps}, "traffic": traffic}
    old = make_model({"rollout": rollout, "replicas": 4})
    new = make_model({"rollout": rollout, "replicas": 4, "model": {"version": "4"}})
    stable = observed_deployment(_deployment(plan(old, Observed())), track="stable", replicas=4)
    decision = RolloutDecision(
        status=None,
        canary_revision=revision_of(new),
        canary_replicas=1,
        route_weight=weight,
        pinned_only=pinned_only,
    )
    return plan(new, Observed(deployments=(stable,)), decision), revision_of(old)


GATEWAY_TRAFFIC = {"mode": "GatewayAPI", "gateway": {"parentRefs": [{"name": "gw"}]}, "pin": {}}


def test_gateway_canary_pins_the_model_service_to_stable(make_model: MakeModel) -> None:
    from kinfer_operator.naming import MODEL_LABEL, REVISION_LABEL

    for weight, pinned_only in ((0, True), (10, False), (50, False)):
        p, stable = _canary_pass(make_model, GATEWAY_TRAFFIC, weight, pinned_only)
        assert _service_selector(p) == {MODEL_LABEL: "resnet50", REVISION_LABEL: stable}
        for kind in ("HTTPRoute", "GRPCRoute"):  # every path: the routes carry the weight
            route = next(a for a in p.applies if a["kind"] == kind)  # type: ignore[attr-defined]
            assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [
                100 - weight,
                weight,
            ]
        assert p.front is not None and p.front.pinned == stable  # type: ignore[attr-defined]


def test_replica_ratio_canary_service_selects_both_revisions(make_model: MakeModel) -> None:
    from kinfer_operator.naming import MODEL_LABEL

    p, _ = _canary_pass(make_model, {"mode": "ReplicaRatio"}, 10, False)
    assert _service_selector(p) == {MODEL_LABEL: "resnet50"}


def test_weight_zero_step_pins_the_service_in_replica_ratio_too(make_model: MakeModel) -> None:
    # The CRD only allows weight 0 with a pin (GatewayAPI); the plan still never lets an
    # unpinned request reach the candidate through the Service at such a step.
    from kinfer_operator.naming import REVISION_LABEL

    p, stable = _canary_pass(make_model, {"mode": "ReplicaRatio"}, 0, True)
    assert _service_selector(p)[REVISION_LABEL] == stable


def test_promotion_unpins_the_service(make_model: MakeModel) -> None:
    from kinfer_operator.naming import MODEL_LABEL
    from kinfer_operator.rollout.machine import RolloutDecision

    rollout = {"canary": {"steps": [{"weight": 10}]}, "traffic": GATEWAY_TRAFFIC}
    old = make_model({"rollout": rollout})
    new = make_model({"rollout": rollout, "model": {"version": "4"}})
    stable = observed_deployment(_deployment(plan(old, Observed())), track="stable")
    decision = RolloutDecision(
        status=None, canary_revision=revision_of(new), route_weight=100, promote=True
    )
    p = plan(new, Observed(deployments=(stable,)), decision)
    assert _service_selector(p) == {MODEL_LABEL: "resnet50"}


def test_gateway_mode_adds_a_grpc_route_when_the_cluster_serves_it(
    make_model: MakeModel,
) -> None:
    p, _ = _canary_pass(make_model, GATEWAY_TRAFFIC, 10, False)
    grpc = next(a for a in p.applies if a["kind"] == "GRPCRoute")  # type: ignore[attr-defined]
    assert [b["weight"] for b in grpc["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    rollout = {"canary": {"steps": [{"weight": 10}]}, "traffic": GATEWAY_TRAFFIC}
    without = plan(make_model({"rollout": rollout}), Observed(grpc_routes_served=False))
    assert "GRPCRoute" not in _kinds(without) and "HTTPRoute" in _kinds(without)
    ratio = plan(make_model({"rollout": {"canary": {"steps": [{"weight": 10}]}}}), Observed())
    assert "GRPCRoute" not in _kinds(ratio)
