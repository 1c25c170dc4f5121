"""Admission by bytes in flight over real sockets: REST and gRPC share one budget, a request
over it is refused before it is read (413 alone, 503 or RESOURCE_EXHAUSTED while others hold
it), and the server answers correctly afterwards."""

import gzip
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tc
from kinfer_runtime.app import grpc_max_message_bytes
from kinfer_runtime.backends import BackendOptions
from kinfer_runtime.backends.onnx import OnnxBackend
from kinfer_runtime.dataplane.budget import ByteBudget
from kinfer_runtime.routes._admission import JSON_COST_FACTOR
from tritonclient.utils import InferenceServerException

INFER = "/v2/models/demo/infer"
BUDGET = 60_000  # room for two 12 KiB images in binary, not for eight


@pytest.fixture(scope="module")
def live(serve, make_settings, unused_port, demo_dir: Path) -> Iterator[Any]:
    settings = make_settings(
        demo_dir / "model.onnx",
        grpc_port=unused_port(),
        max_inflight_bytes=BUDGET,
        grpc_max_concurrent_rpcs=1,  # gRPC messages may then be as large as the budget
    )
    with serve(settings) as server:
        yield server


@pytest.fixture(scope="module")
def reference(demo_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    backend = OnnxBackend(demo_dir / "model.onnx", BackendOptions(device="cpu"))
    backend.load()
    return lambda x: backend.infer({"input": x})["logits"]


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def holder(live) -> Iterator[Callable[[int], Callable[[], None]]]:
    """hold(n): a request declaring an n-byte binary body that sends 10 bytes and stalls, so
    its charge stays held. Returns a function that hangs it up and waits for the release;
    the fixture hangs up whatever is left at the end of the test."""
    sockets: list[socket.socket] = []
    budget = live.service.budget

    def hang_up() -> None:
        for sock in sockets:
            sock.close()
        _wait(lambda: budget.in_use == 0, "every charge to be released")

    def hold(size: int) -> Callable[[], None]:
        port = int(live.url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port))
        sockets.append(sock)
        before = budget.in_use
        head = (
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: 10\r\nContent-Length: {size}\r\n\r\n"
        )
        sock.sendall(head.encode() + b"{" * 10)
        _wait(lambda: budget.in_use > before, "the stalled request's charge")
        return hang_up

    yield hold
    hang_up()


def _assert_answers(live, oip, images, reference) -> None:
    body, headers = oip.image_body(images[:2])
    response = httpx.post(f"{live.url}{INFER}", content=body, headers=headers, timeout=30)
    np.testing.assert_allclose(oip.outputs(response)["logits"], reference(images[:2]), rtol=1e-5)


# --- REST ------------------------------------------------------------------------------------


def test_a_body_needing_more_than_the_whole_budget_is_413_and_others_still_pass(
    live, oip, images, reference
) -> None:
    body, headers = oip.image_body(images[:8])  # 96 KiB of pixels, under the body limit
    response = httpx.post(f"{live.url}{INFER}", content=body, headers=headers)
    assert response.status_code == 413
    assert f"above the runtime's in-flight budget of {BUDGET} bytes" in response.json()["error"]
    assert live.service.budget.in_use == 0
    _assert_answers(live, oip, images, reference)


def test_json_costs_several_times_its_size(live, oip, images) -> None:
    doc = oip.json_body(np.round(images[:1], 2))  # about 6 bytes a number
    content = httpx.Request("POST", "http://x", json=doc).content
    assert len(content) < BUDGET < len(content) * JSON_COST_FACTOR  # as binary it would fit
    response = httpx.post(f"{live.url}{INFER}", content=content)
    assert response.status_code == 413


def test_a_full_budget_is_503_with_retry_after_until_it_is_freed(
    live, holder, oip, images, reference
) -> None:
    hang_up = holder(40_000)
    body, headers = oip.image_body(images[:2])  # 24 KiB: fits the budget, not what is left
    response = httpx.post(f"{live.url}{INFER}", content=body, headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "of request memory in use" in response.json()["error"]
    hang_up()
    _assert_answers(live, oip, images, reference)


def test_a_chunked_body_is_counted_as_it_streams_and_refused_once_over(
    live, holder, oip, images
) -> None:
    holder(40_000)
    body, headers = oip.image_body(images[:2])
    chunks = iter([body[:8_000], body[8_000:16_000], body[16_000:]])  # no Content-Length
    response = httpx.post(f"{live.url}{INFER}", content=chunks, headers=headers)
    assert response.status_code == 503


def test_a_chunked_body_over_the_whole_budget_is_413(live, oip, images) -> None:
    body, headers = oip.image_body(images[:8])
    chunks = iter([body[i : i + 16_000] for i in range(0, len(body), 16_000)])
    response = httpx.post(f"{live.url}{INFER}", content=chunks, headers=headers)
    assert response.status_code == 413


def test_a_compressed_body_is_charged_for_its_inflated_size(live, oip, images) -> None:
    body, headers = oip.image_body(np.zeros_like(images[:8]))  # compresses to almost nothing
    packed = gzip.compress(body)
    assert len(packed) < BUDGET
    response = httpx.post(
        f"{live.url}{INFER}", content=packed, headers={**headers, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413


# --- gRPC ------------------------------------------------------------------------------------


def _grpc_infer(live, x: np.ndarray) -> np.ndarray:
    tensor = tc.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    with tc.InferenceServerClient(live.grpc_target) as client:
        result = client.infer("demo", [tensor])
    logits = result.as_numpy("logits")
    assert logits is not None
    return logits


def test_a_grpc_message_over_the_budget_is_resource_exhausted_as_it_arrives(
    live, images, reference
) -> None:
    with pytest.raises(InferenceServerException) as info:
        _grpc_infer(live, images[:8])
    assert str(info.value.status()) == "StatusCode.RESOURCE_EXHAUSTED"
    assert "larger than max" in str(info.value.message())  # grpcio's own message limit
    np.testing.assert_allclose(_grpc_infer(live, images[:2]), reference(images[:2]), rtol=1e-5)


@pytest.mark.parametrize(
    ("budget", "calls", "expected"),
    [
        (256 << 20, 64, 4 << 20),  # a 1 GiB pod: 4 MiB messages
        (4 << 30, 64, 64 << 20),  # a 16 GiB pod: the body limit
        (60_000, 1, 60_000),
    ],
)
def test_grpc_messages_are_limited_so_that_the_calls_served_fit_the_budget(
    make_settings, budget: int, calls: int, expected: int
) -> None:
    settings = make_settings("x", grpc_max_concurrent_rpcs=calls)
    assert grpc_max_message_bytes(settings, ByteBudget(budget)) == expected


def test_grpc_shares_the_budget_with_rest_and_serves_again_once_freed(
    live, holder, oip, images, reference
) -> None:
    hang_up = holder(40_000)  # held by a REST request
    with pytest.raises(InferenceServerException) as info:
        _grpc_infer(live, images[:2])
    assert str(info.value.status()) == "StatusCode.RESOURCE_EXHAUSTED"
    assert "of request memory in use" in str(info.value.message())
    hang_up()
    np.testing.assert_allclose(_grpc_infer(live, images[:2]), reference(images[:2]), rtol=1e-5)
    _assert_answers(live, oip, images, reference)
