"""Traffic classes no client can forge: the shadow and pinned markers count only on the
classified listener (which only the mirror and the pinned route reach); on the public port a
request counts as live whatever its headers, so canary analysis sees its failures."""

from collections.abc import Iterator

import httpx
import pytest
from kinfer_runtime.mirror import SHADOW_HEADER
from kinfer_runtime.routes.inference import (
    COLD_START_MARKER_HEADER,
    PINNED_MARKER_HEADER,
    QUEUE_DEPTH_HEADER,
    traffic_class,
)

INFER = "/v2/models/demo/infer"
BOTH_MARKERS = {SHADOW_HEADER: "stable", PINNED_MARKER_HEADER: "true"}


def _counts(live) -> dict[str, float]:
    """Requests so far by class and code, over the codes these tests produce."""
    out: dict[str, float] = {}
    for code in ("200", "400"):
        for source in ("live", "shadow", "cold_start"):
            labels = {"protocol": "rest", "source": source, "code": code}
            out[f"{source} {code}"] = live.metric("kinfer_requests_total", **labels) or 0.0
        pinned = live.metric("kinfer_pinned_requests_total", protocol="rest", code=code)
        out[f"pinned {code}"] = pinned or 0.0
    return out


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in after if after[key] != before[key]}


@pytest.fixture(scope="module")
def server(demo_dir, make_settings, serve):
    """A server of its own: the shadow and pinned series made here would surprise other
    modules' tests of the shared one."""
    with serve(make_settings(demo_dir / "model.onnx", revision="r1")) as live:
        yield live


@pytest.fixture
def public(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
def classified(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.classified_url, timeout=30) as c:
        yield c


def test_a_client_spoofing_both_markers_on_the_public_port_is_counted_live(
    server, public: httpx.Client, oip, images
) -> None:
    body, headers = oip.image_body(images[:1])
    before = _counts(server)
    for _ in range(3):
        ok = public.post(INFER, content=body, headers=headers | BOTH_MARKERS)
        assert ok.status_code == 200
        failed = public.post(INFER, json={}, headers=BOTH_MARKERS)
        assert failed.status_code == 400
    # Every failure is where canary analysis reads it: nothing hidden as shadow or pinned.
    assert _delta(before, _counts(server)) == {"live 200": 3, "live 400": 3}


def test_a_client_spoofing_the_cold_start_marker_on_the_public_port_is_counted_live(
    server, public: httpx.Client, oip, images
) -> None:
    body, headers = oip.image_body(images[:1])
    before = _counts(server)
    marker = {COLD_START_MARKER_HEADER: "true"}
    assert public.post(INFER, content=body, headers=headers | marker).status_code == 200
    assert _delta(before, _counts(server)) == {"live 200": 1}


def test_every_answer_reports_the_requests_in_flight_beside_it(
    public: httpx.Client, oip, images
) -> None:
    body, headers = oip.image_body(images[:1])
    answer = public.post(INFER, content=body, headers=headers)
    assert answer.headers[QUEUE_DEPTH_HEADER] == "0"  # alone: nothing else in flight


@pytest.mark.parametrize(
    ("markers", "counted_as"),
    [
        ({SHADOW_HEADER: "stable"}, "shadow"),
        ({PINNED_MARKER_HEADER: "true"}, "pinned"),
        (BOTH_MARKERS, "pinned"),  # the pinned rule's marker wins, as before
        ({PINNED_MARKER_HEADER: "yes"}, "live"),  # only the value the route sets
        ({COLD_START_MARKER_HEADER: "true"}, "cold_start"),  # held by the activator
        ({COLD_START_MARKER_HEADER: "1"}, "live"),
        ({}, "live"),
    ],
)
def test_on_the_classified_port_the_markers_count_the_request_apart(
    markers: dict[str, str], counted_as: str, server, classified: httpx.Client, oip, images
) -> None:
    body, headers = oip.image_body(images[:1])
    before = _counts(server)
    assert classified.post(INFER, content=body, headers=headers | markers).status_code == 200
    assert classified.post(INFER, json={}, headers=markers).status_code == 400
    assert _delta(before, _counts(server)) == {f"{counted_as} 200": 1, f"{counted_as} 400": 1}


def test_the_classified_port_serves_the_same_api(classified: httpx.Client) -> None:
    assert classified.get("/v2/health/ready").status_code == 200
    assert classified.get("/v2/models/demo").json()["name"] == "demo"


def _scope(port: int | None, *headers: tuple[bytes, bytes]) -> dict[str, object]:
    server = None if port is None else ("10.0.0.7", port)
    return {"type": "http", "server": server, "headers": list(headers)}


@pytest.mark.parametrize(
    ("listener", "classified_port", "expected"),
    [
        (8090, 8090, "shadow"),
        (8080, 8090, "live"),  # the public port
        (8090, None, "live"),  # no classified listener configured: markers never count
        (None, 8090, "live"),  # a connection without a TCP address (a Unix socket)
    ],
)
def test_only_the_listening_port_decides_whether_markers_count(
    listener: int | None, classified_port: int | None, expected: str
) -> None:
    scope = _scope(listener, (SHADOW_HEADER.encode(), b"stable"))
    assert traffic_class(scope, classified_port) == expected
