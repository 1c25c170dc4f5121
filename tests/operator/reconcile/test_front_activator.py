"""The activator side of the Front decision: which Service path children a pass wants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kinfer_operator.children.activator_routes import PortPair
from kinfer_operator.children.service import FRONTED_LABEL
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import REVISION_LABEL
from kinfer_operator.reconcile.front_activator import activator_children, route_for
from kinfer_operator.reconcile.plan import Delete

MakeModel = Callable[..., InferenceModel]
ZERO = {"replicas": None, "autoscaling": {"minReplicas": 0, "maxReplicas": 4}}


def _children(model: InferenceModel, **over: Any) -> Any:
    args: dict[str, Any] = {
        "via": "activator",
        "service_revisions": None,
        "stable_revision": "abc",
        "canary_revision": None,
        "activator_ips": ["10.0.0.1", "10.0.0.2"],
        "ports": PortPair(20000),
        "slice_observed": False,
        **over,
    }
    return activator_children(model, **args)


def test_at_the_activator_the_service_loses_its_selector_and_gets_our_slice(
    make_model: MakeModel,
) -> None:
    out = _children(make_model(ZERO))
    kinds = [(a["kind"], a["metadata"]["name"]) for a in out.applies]
    assert kinds == [
        ("Service", "resnet50"),
        ("EndpointSlice", "resnet50-kinfer"),
        ("Service", "resnet50-stable"),
        ("Service", "resnet50-canary"),
    ]
    assert FRONTED_LABEL in out.applies[0]["spec"]["selector"]
    assert out.via == "activator"


def test_back_to_the_pods_the_selector_returns_and_our_slice_goes(make_model: MakeModel) -> None:
    out = _children(make_model(ZERO), via="pods", service_revisions=("abc",), slice_observed=True)
    (service,) = out.applies
    assert service["spec"]["selector"][REVISION_LABEL] == "abc"
    assert out.deletes == [Delete("EndpointSlice", "resnet50-kinfer")]


def test_a_full_table_leaves_the_pods_in_front(make_model: MakeModel) -> None:
    out = _children(make_model(ZERO), ports=None)
    assert out.via == "pods"
    assert out.applies[0]["spec"]["selector"]


def test_only_scale_to_zero_or_least_queue_models_have_a_row(make_model: MakeModel) -> None:
    fixed = make_model()
    args: dict[str, Any] = {
        "stable_revision": "abc",
        "canary_revision": None,
        "canary_weight": 0,
        "at_zero": False,
    }
    assert route_for(fixed, **args) is None
    assert route_for(make_model({"routing": "leastQueue"}), **args) is not None
    row = route_for(make_model(ZERO), **{**args, "at_zero": True})
    assert row is not None and row.at_zero
