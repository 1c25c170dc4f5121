"""decide_front: the one decision the model's Service, EndpointSlices and routes are built from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kinfer_operator.model import InferenceModel
from kinfer_operator.rollout.front import Front, decide_front

MakeModel = Callable[..., InferenceModel]

GATEWAY: dict[str, Any] = {
    "canary": {"steps": [{"weight": 0}, {"weight": 10}, {"weight": 50}]},
    "traffic": {"mode": "GatewayAPI", "gateway": {"parentRefs": [{"name": "gw"}]}, "pin": {}},
}
RATIO: dict[str, Any] = {"canary": {"steps": [{"weight": 10}, {"weight": 50}]}}


def test_no_candidate_selects_every_revision(make_model: MakeModel) -> None:
    front = decide_front(make_model({"rollout": GATEWAY}), "s1", None, 30)
    assert front == Front("pods", None, "s1", None, 0)  # no candidate: no canary weight
    assert front.pinned is None


@pytest.mark.parametrize("weight", [0, 10, 50, 100])
def test_gateway_canary_pins_the_service_to_stable_at_every_weight(
    make_model: MakeModel, weight: int
) -> None:
    front = decide_front(make_model({"rollout": GATEWAY}), "s1", "c2", weight)
    assert front.via == "pods" and front.service_revisions == ("s1",)
    assert front.canary_weight == weight and front.canary_revision == "c2"


def test_replica_ratio_canary_selects_both_revisions(make_model: MakeModel) -> None:
    front = decide_front(make_model({"rollout": RATIO}), "s1", "c2", 10)
    assert front.service_revisions is None and front.canary_weight == 10


def test_weight_zero_step_pins_to_stable_in_any_mode(make_model: MakeModel) -> None:
    for rollout in (GATEWAY, RATIO):
        front = decide_front(make_model({"rollout": rollout}), "s1", "c2", 0, pinned_only_step=True)
        assert front.pinned == "s1", rollout


def test_shadow_pin_wins(make_model: MakeModel) -> None:
    front = decide_front(make_model({"rollout": RATIO}), "s1", "c2", 0, shadow_pin="s1")
    assert front.service_revisions == ("s1",)


def test_weights_are_clamped(make_model: MakeModel) -> None:
    model = make_model({"rollout": GATEWAY})
    assert decide_front(model, "s1", "c2", 130).canary_weight == 100
    assert decide_front(model, "s1", "c2", -5).canary_weight == 0


def test_activator_fronts_least_queue_or_an_idle_scale_to_zero_model(make_model: MakeModel) -> None:
    zero = make_model({"replicas": None, "autoscaling": {"minReplicas": 0, "maxReplicas": 4}})
    plain = make_model()
    assert decide_front(plain, "s1", None, 0, least_queue=True, activator_ready=True).via == (
        "activator"
    )
    assert decide_front(zero, "s1", None, 0, at_zero=True, activator_ready=True).via == "activator"
    front = decide_front(zero, "s1", "c2", 10, at_zero=True, activator_ready=True)
    assert front == Front("activator", None, "s1", "c2", 10)
    # Not at zero, or a model that never scales to zero, or no activator: the pods front.
    assert decide_front(zero, "s1", None, 0, at_zero=False, activator_ready=True).via == "pods"
    assert decide_front(plain, "s1", None, 0, at_zero=True, activator_ready=True).via == "pods"
    assert decide_front(zero, "s1", None, 0, at_zero=True, least_queue=True).via == "pods"
