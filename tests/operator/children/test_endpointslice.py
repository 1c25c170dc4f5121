"""build_activator_slice: the model's Service pointed at the Ready activator pods."""

from __future__ import annotations

from collections.abc import Callable

from kinfer_operator.children.activator_routes import PortPair
from kinfer_operator.children.endpointslice import (
    MANAGED_BY_VALUE,
    build_activator_slice,
    slice_name,
)
from kinfer_operator.children.service import build_service
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import MODEL_LABEL

MakeModel = Callable[..., InferenceModel]


def test_slice_belongs_to_the_model_service_and_claims_its_manager(make_model: MakeModel) -> None:
    model = make_model()
    built = build_activator_slice(model, ["10.0.0.2"], PortPair(20000))
    labels = built["metadata"]["labels"]
    assert built["metadata"]["name"] == slice_name(model) == "resnet50-kinfer"
    assert labels["kubernetes.io/service-name"] == build_service(model)["metadata"]["name"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == MANAGED_BY_VALUE
    assert labels[MODEL_LABEL] == "resnet50"
    assert built["metadata"]["ownerReferences"] == [model.owner_reference]


def test_service_ports_map_by_name_to_the_model_activator_pair(make_model: MakeModel) -> None:
    built = build_activator_slice(make_model(), ["10.0.0.2"], PortPair(20004))
    assert {p["name"]: p["port"] for p in built["ports"]} == {"http": 20004, "grpc": 20005}
    service_ports = {p["name"] for p in build_service(make_model())["spec"]["ports"]}
    assert {p["name"] for p in built["ports"]} <= service_ports


def test_endpoints_are_the_ready_activator_pods_in_a_stable_order(make_model: MakeModel) -> None:
    model = make_model()
    one = build_activator_slice(model, ["10.0.0.9", "10.0.0.2", "10.0.0.9"], PortPair(20000))
    two = build_activator_slice(model, ["10.0.0.2", "10.0.0.9"], PortPair(20000))
    assert one == two
    assert [e["addresses"] for e in one["endpoints"]] == [["10.0.0.2"], ["10.0.0.9"]]
    assert one["addressType"] == "IPv4"


def test_ipv6_activator_pods_make_an_ipv6_slice(make_model: MakeModel) -> None:
    built = build_activator_slice(make_model(), ["fd00::2"], PortPair(20000))
    assert built["addressType"] == "IPv6"
    assert built["endpoints"][0]["addresses"] == ["fd00::2"]


def test_no_ready_activator_gives_an_empty_slice(make_model: MakeModel) -> None:
    assert build_activator_slice(make_model(), [], PortPair(20000))["endpoints"] == []
