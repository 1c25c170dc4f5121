"""The single exception-to-response mapping, including errors raised outside our routes."""

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from kinfer_runtime.errors import (
    InferenceFailed,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
)
from kinfer_runtime.routes.errors import install_error_handler


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (InvalidInput("bad"), 400, None),
        (ModelNotFound("bad"), 404, None),
        (PayloadTooLarge("bad"), 413, None),
        (InferenceFailed("bad"), 500, None),
        (ModelNotReady("bad"), 503, "1"),
        (Overloaded("bad"), 503, "1"),
        (ValueError("secret internals"), 500, None),
    ],
)
def test_each_domain_error_maps_to_its_status_with_an_error_body(
    error: Exception, status: int, retry_after: str | None
) -> None:
    app = FastAPI()
    install_error_handler(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await c.get("/boom")

    response = asyncio.run(get())
    assert response.status_code == status
    assert response.headers.get("Retry-After") == retry_after
    expected = "bad" if status != 500 or isinstance(error, InferenceFailed) else None
    message = response.json()["error"]
    if expected is not None:
        assert message == expected
    else:
        assert message == "internal error: ValueError"  # no internals leak to the client


def test_unknown_route_is_404_json(client: httpx.Client) -> None:
    response = client.get("/v2/nowhere")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


def test_wrong_method_is_405_json(client: httpx.Client) -> None:
    response = client.get("/v2/models/demo/infer")
    assert response.status_code == 405
    assert response.json() == {"error": "Method Not Allowed"}
