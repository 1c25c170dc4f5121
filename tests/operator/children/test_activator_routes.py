"""The activator's routing table: port pairs, rows, and the ConfigMap that carries them."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from kinfer_operator.children.activator_routes import (
    CONFIGMAP_NAME,
    FIRST_PORT,
    MAX_ROUTES,
    ROUTES_KEY,
    PortPair,
    allocate_ports,
    build_routes_configmap,
    held_ports,
    route_of,
    wake_replicas,
)
from kinfer_operator.model import InferenceModel

MakeModel = Callable[..., InferenceModel]
ZERO = {"replicas": None, "autoscaling": {"minReplicas": 0, "maxReplicas": 10}}


def test_new_models_get_the_lowest_free_pairs_in_name_order() -> None:
    ports = allocate_ports([("b", "m"), ("a", "m")], {})
    assert ports == {("a", "m"): PortPair(20000), ("b", "m"): PortPair(20002)}
    assert ports[("a", "m")].grpc == 20001


def test_a_model_keeps_its_pair_and_a_freed_pair_is_reused() -> None:
    held = {("a", "m"): PortPair(20000), ("b", "m"): PortPair(20002), ("c", "m"): PortPair(20004)}
    ports = allocate_ports([("a", "m"), ("c", "m"), ("d", "m")], held)
    assert ports[("c", "m")] == PortPair(20004)
    assert ports[("d", "m")] == PortPair(20002)  # b left the table


def test_two_models_claiming_one_pair_do_not_share_it() -> None:
    held = {("a", "m"): PortPair(20000), ("b", "m"): PortPair(20000)}
    ports = allocate_ports(held, held)
    assert len(set(ports.values())) == 2


def test_the_table_is_bounded() -> None:
    keys = [("ns", f"m{i:05d}") for i in range(MAX_ROUTES + 3)]
    ports = allocate_ports(keys, {})
    assert len(ports) == MAX_ROUTES
    assert max(p.grpc for p in ports.values()) < 65536


def _table(make_model: MakeModel, **front: object) -> dict[str, object]:
    model = make_model(ZERO)
    route = route_of(
        model,
        stable_revision="abc",
        canary_revision=front.get("canary"),  # type: ignore[arg-type]
        canary_weight=10,
        at_zero=True,
    )
    key = (model.namespace, model.name)
    cm = build_routes_configmap("kinfer-system", {key: route}, {key: PortPair(FIRST_PORT)})
    assert (cm["metadata"]["name"], cm["metadata"]["namespace"]) == (
        CONFIGMAP_NAME,
        "kinfer-system",
    )
    return json.loads(cm["data"][ROUTES_KEY])  # type: ignore[no-any-return]


def test_row_has_every_field_the_activator_reads(make_model: MakeModel) -> None:
    table = _table(make_model, canary="def")
    assert table["version"] == 1
    row = table["routes"]["20000"]  # type: ignore[index]
    assert row == {
        "namespace": "ml",
        "model": "resnet50",
        "httpPort": 20000,
        "grpcPort": 20001,
        "stable": {"revision": "abc", "service": "resnet50-stable", "deployment": "resnet50-abc"},
        "canary": {"revision": "def", "service": "resnet50-canary", "deployment": "resnet50-def"},
        "canaryWeight": 10,
        "atZero": True,
        "leastQueue": False,
        "targetConcurrency": 32,
        "maxHeldRequests": 1000,
        "maxHoldSeconds": 660,
        "wakeReplicas": {"max": 10},
    }


def test_no_canary_means_null_and_weight_zero(make_model: MakeModel) -> None:
    row = _table(make_model)["routes"]["20000"]  # type: ignore[index]
    assert (row["canary"], row["canaryWeight"]) == (None, 0)


def test_written_table_reads_back_as_the_same_pairs(make_model: MakeModel) -> None:
    model = make_model(ZERO)
    key = (model.namespace, model.name)
    route = route_of(
        model, stable_revision="abc", canary_revision=None, canary_weight=0, at_zero=False
    )
    cm = build_routes_configmap("kinfer-system", {key: route}, {key: PortPair(20006)})
    assert held_ports(cm) == {key: PortPair(20006)}
    assert build_routes_configmap("kinfer-system", {key: route}, {key: PortPair(20006)}) == cm


@pytest.mark.parametrize(
    "data", [None, {}, {ROUTES_KEY: "not json"}, {ROUTES_KEY: '{"routes": {"x": {}}}'}]
)
def test_an_unreadable_table_holds_no_pairs(data: dict[str, str] | None) -> None:
    assert held_ports({"data": data}) == {}


@pytest.mark.parametrize(
    ("held", "target", "most", "wake"),
    [(0, 8, 10, 1), (1, 8, 10, 1), (17, 8, 10, 3), (999, 8, 10, 10)],
)
def test_wake_asks_for_enough_replicas_for_the_held_requests(
    held: int, target: int, most: int, wake: int
) -> None:
    assert wake_replicas(held, target, most) == wake
