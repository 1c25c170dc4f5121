"""gRPC through the activator: bytes in and out, the same answers as the runtime's own, and
the same refusals as over REST with gRPC codes."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from kinfer_activator.grpc_proxy import model_name_field
from kinfer_runtime.schemas.proto import grpc_service_pb2 as pb
from support.activator import ActivatorThread, Runtime, free_port, make_route

INFER = "/inference.GRPCInferenceService/ModelInfer"


def _request(model: str = "demo") -> bytes:
    image = np.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(np.float32)
    request = pb.ModelInferRequest(model_name=model, id="abc")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 3, 32, 32])
    request.raw_input_contents.append(image.tobytes())
    return request.SerializeToString()


async def _infer(target: str, body: bytes) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(INFER)(body, timeout=60)
        response: bytes = await call
        return response, tuple(await call.trailing_metadata() or ())


def test_model_name_is_read_from_field_one_wherever_it_is() -> None:
    assert model_name_field(_request("resnet")) == "resnet"
    later = pb.ModelInferRequest(id="x", model_version="2")
    later.inputs.add(name="input", datatype="FP32", shape=[1])
    later.model_name = "bert"
    assert model_name_field(later.SerializeToString()) == "bert"
    assert model_name_field(b"\x0a\xff") is None  # truncated: left to the runtime
    assert model_name_field(b"") is None


def test_infer_through_the_activator_equals_the_runtime_direct(
    activator: ActivatorThread, runtimes: list[Runtime]
) -> None:
    port, grpc_port = free_port(), free_port()
    route = make_route(port, grpc_port=grpc_port)
    activator.apply(route)
    activator.set_pods(route.stable.service, [runtimes[0].pod])

    via, _ = asyncio.run(_infer(f"127.0.0.1:{grpc_port}", _request()))
    direct, _ = asyncio.run(_infer(f"127.0.0.1:{runtimes[0].pod.grpc_port}", _request()))

    assert via == direct


def test_held_grpc_call_is_released_with_the_cold_start_in_trailers(
    activator: ActivatorThread, runtimes: list[Runtime]
) -> None:
    port, grpc_port = free_port(), free_port()
    route = make_route(port, grpc_port=grpc_port, at_zero=True)
    activator.apply(route)
    activator.waker.on_wake = lambda _: (
        activator.activator.pool(port)
        and activator.endpoints.set("team-a", route.stable.service, [runtimes[1].pod])
    )

    _, trailers = asyncio.run(_infer(f"127.0.0.1:{grpc_port}", _request()))

    assert "x-kinfer-cold-start" in dict(trailers)
    assert activator.waker.asks == [("team-a", "demo-r1", 1)]


@pytest.mark.parametrize(
    ("fields", "model", "code"),
    [
        ({}, "resnet", grpc.StatusCode.NOT_FOUND),
        ({"at_zero": True, "max_hold_seconds": 0.2}, "demo", grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_refusals_have_grpc_codes(
    activator: ActivatorThread, fields: dict[str, object], model: str, code: grpc.StatusCode
) -> None:
    port, grpc_port = free_port(), free_port()
    activator.apply(make_route(port, grpc_port=grpc_port, **fields))

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        asyncio.run(_infer(f"127.0.0.1:{grpc_port}", _request(model)))

    assert refused.value.code() == code
    if model == "resnet":
        assert "'resnet'" in (refused.value.details() or "")
