"""The routing table the operator keeps: pairs handed out per pass, one debounced writer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kinfer_operator.children.activator_routes import ROUTES_KEY, PortPair, Route, TrackRef
from kinfer_operator.reconcile.routes_table import RoutesTable
from support.clock import Clock


def _route(namespace: str, name: str, at_zero: bool = True) -> Route:
    return Route(
        namespace=namespace,
        model=name,
        stable=TrackRef("abc", f"{name}-stable", f"{name}-abc"),
        canary=None,
        canary_weight=0,
        at_zero=at_zero,
        least_queue=False,
        target_concurrency=8,
        max_held_requests=100,
        max_hold_seconds=660,
        wake_max=4,
    )


class _Writes:
    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []

    def __call__(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        self.written.append(dict(obj))
        return obj


def _rows(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(json.loads(obj["data"][ROUTES_KEY])["routes"])


def test_a_pass_gets_its_pair_at_once_and_keeps_it() -> None:
    table = RoutesTable("kinfer-system")
    assert table.submit(("b", "m"), _route("b", "m")) == PortPair(20000)
    assert table.submit(("a", "m"), _route("a", "m")) == PortPair(20002)
    assert table.submit(("b", "m"), _route("b", "m", at_zero=False)) == PortPair(20000)


def test_a_model_leaving_frees_its_pair_and_the_table_row() -> None:
    table = RoutesTable("kinfer-system")
    table.submit(("a", "m"), _route("a", "m"))
    table.forget(("a", "m"))
    assert _rows(table.desired()) == {}
    assert table.submit(("c", "m"), _route("c", "m")) == PortPair(20000)


def test_writes_are_debounced_and_a_steady_table_writes_nothing() -> None:
    clock = Clock()
    table = RoutesTable("kinfer-system", monotonic=clock.monotonic, debounce_seconds=1.0)
    writes = _Writes()
    table.submit(("a", "m"), _route("a", "m"))
    assert table.flush(writes)
    table.submit(("b", "m"), _route("b", "m"))
    assert not table.flush(writes)  # within the debounce
    clock.t = 2
    assert table.flush(writes)
    clock.t = 10
    assert not table.flush(writes)  # nothing changed
    assert len(writes.written) == 2
    assert set(_rows(writes.written[-1])) == {"20000", "20002"}


def test_seeding_from_the_observed_table_keeps_every_model_on_its_pair() -> None:
    first = RoutesTable("kinfer-system")
    first.submit(("a", "m"), _route("a", "m"))
    first.submit(("b", "m"), _route("b", "m"))
    first.forget(("a", "m"))
    observed = first.desired()  # b on 20002, 20000 free
    successor = RoutesTable("kinfer-system")
    successor.seed(observed)
    assert successor.submit(("b", "m"), _route("b", "m")) == PortPair(20002)
    assert not successor.flush(_Writes())  # the same table: nothing to write
