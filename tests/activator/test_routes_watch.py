"""The routing table from the watched ConfigMap: each new valid version once, the last good one
kept through invalid writes and deletes. The watch thread itself runs on the real node
(e2e/test_real_scale_to_zero.py)."""

from __future__ import annotations

from typing import Any

from kinfer_activator.routes_watch import ROUTES_KEY, RouteConfigMap
from kinfer_activator.table import RoutesTable
from kinfer_operator.children.activator_routes import ROUTES_KEY as WRITTEN_KEY
from support.activator import make_route, table


def _configmap(routes: RoutesTable | str | None) -> dict[str, Any]:
    if routes is None:
        return {"metadata": {"name": "kinfer-activator-routes"}}
    raw = routes if isinstance(routes, str) else routes.model_dump_json(by_alias=True)
    return {"metadata": {"name": "kinfer-activator-routes"}, "data": {ROUTES_KEY: raw}}


def test_each_new_version_is_returned_once() -> None:
    watched = RouteConfigMap("kinfer-system", "kinfer-activator-routes", api=object())
    assert watched.poll() is None  # nothing observed yet: no listener opens
    watched.observe(_configmap(table(make_route(20000))))
    first = watched.poll()
    assert first is not None and list(first.routes) == ["20000"]
    assert watched.poll() is None
    watched.observe(_configmap(table(make_route(20002))))
    second = watched.poll()
    assert second is not None and list(second.routes) == ["20002"]


def test_an_invalid_or_empty_version_keeps_the_last_table() -> None:
    watched = RouteConfigMap("kinfer-system", "kinfer-activator-routes", api=object())
    watched.observe(_configmap(table(make_route(20000))))
    assert watched.poll() is not None
    watched.observe(_configmap("{not json"))
    assert watched.poll() is None
    watched.observe(_configmap(None))  # a ConfigMap without the key: nothing new
    assert watched.poll() is None


def test_the_key_read_is_the_key_the_operator_writes() -> None:
    assert ROUTES_KEY == WRITTEN_KEY
