"""build_service: one endpoint over all revisions, with http and metrics ports."""

from __future__ import annotations

from collections.abc import Callable

from kinfer_operator import runtime_contract as rc
from kinfer_operator.children import build_service
from kinfer_operator.children.deployment import build_deployment
from kinfer_operator.children.service import FRONTED_LABEL
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import MODEL_LABEL, endpoint_url


def test_service_selects_every_revision_of_the_model(
    make_model: Callable[..., InferenceModel],
) -> None:
    svc = build_service(make_model())
    assert svc["spec"]["selector"] == {MODEL_LABEL: "resnet50"}


def test_service_exposes_http_grpc_and_metrics_ports(
    make_model: Callable[..., InferenceModel],
) -> None:
    ports = {p["name"]: p for p in build_service(make_model())["spec"]["ports"]}
    assert {name: p["port"] for name, p in ports.items()} == {
        "http": rc.HTTP_PORT,
        "grpc": rc.GRPC_PORT,
        "metrics": rc.METRICS_PORT,
    }
    assert ports["grpc"]["targetPort"] == "grpc"
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"


def test_endpoint_is_the_in_cluster_model_url(make_model: Callable[..., InferenceModel]) -> None:
    url = endpoint_url(make_model())
    assert url == "http://resnet50.ml.svc.cluster.local:8080/v2/models/resnet50"


def test_clients_of_the_model_service_never_reach_the_classified_port(
    make_model: Callable[..., InferenceModel],
) -> None:
    # Only there do the shadow and pinned markers count: a Service client could forge them.
    service = build_service(make_model(), ("abc",))
    ports = service["spec"]["ports"]
    assert rc.CLASSIFIED_PORT not in {p["port"] for p in ports}
    assert rc.CLASSIFIED_PORT_NAME not in {p["targetPort"] for p in ports}


def test_service_fronted_by_the_activator_selects_no_pod_and_keeps_its_ports(
    make_model: Callable[..., InferenceModel],
) -> None:
    model = make_model()
    fronted = build_service(model, selector=False)
    # A selector, not none: without one the EndpointSlice controller would leave its last
    # slice (the pods' addresses) behind.
    assert fronted["spec"]["selector"][FRONTED_LABEL] == "true"
    pod_labels = build_deployment(model, "stable")["spec"]["template"]["metadata"]["labels"]
    assert FRONTED_LABEL not in pod_labels
    assert fronted["spec"]["ports"] == build_service(model)["spec"]["ports"]
