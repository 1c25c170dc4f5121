"""The Prometheus client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kinfer_operator.rollout._prometheus import MAX_RESPONSE_BYTES, PrometheusError, query_value
from kinfer_operator.rollout.endpoints import Endpoint

Answer = Callable[[BaseHTTPRequestHandler], None]
ONE = {"status": "success", "data": {"resultType": "vector", "result": [{"value": [0, "7"]}]}}


def _json(body: object, code: int = 200) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


class Server:
    def __init__(self) -> None:
        self.answer: Answer = _json(ONE)
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers)))
                server.answer(self)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    thread = threading.Thread(target=s.httpd.serve_forever, daemon=True)
    thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_one_series_gives_its_value(server: Server) -> None:
    assert query_value(Endpoint(url=server.url), "up") == 7.0
    path, _ = server.requests[0]
    assert path.startswith("/api/v1/query?query=up")


def test_a_redirect_is_an_error_naming_only_the_status(server: Server) -> None:
    def redirect(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server.answer = redirect
    with pytest.raises(PrometheusError) as caught:
        query_value(Endpoint(url=server.url), "up", name="thanos")
    message = str(caught.value)
    assert "302" in message and "'thanos'" in message and "redirects are not followed" in message
    assert "169.254" not in message
    assert len(server.requests) == 1  # nothing was sent anywhere else


def test_an_answer_over_the_byte_limit_is_refused(server: Server) -> None:
    server.answer = _json({"status": "success", "pad": "x" * MAX_RESPONSE_BYTES})
    with pytest.raises(PrometheusError, match="larger than"):
        query_value(Endpoint(url=server.url), "up")


def test_an_error_body_reaches_the_message_only_as_a_short_printable_excerpt(
    server: Server,
) -> None:
    def fail(handler: BaseHTTPRequestHandler) -> None:
        body = b"secret-of-another-tenant \x1b[31m\n" + b"A" * 5000
        handler.send_response(500)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server.answer = fail
    with pytest.raises(PrometheusError) as caught:
        query_value(Endpoint(url=server.url), "up")
    message = str(caught.value)
    assert message.startswith("HTTP 500") and len(message) < 200
    assert "\x1b" not in message and "\n" not in message


def test_a_query_error_payload_is_bounded(server: Server) -> None:
    server.answer = _json({"status": "error", "error": "parse error " * 500}, code=200)
    with pytest.raises(PrometheusError, match="query failed") as caught:
        query_value(Endpoint(url=server.url), "up")
    assert len(str(caught.value)) < 200


def test_the_bearer_token_comes_from_its_file(server: Server, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    query_value(Endpoint(url=server.url, bearer_token_file=str(token)), "up")
    _, headers = server.requests[0]
    assert headers["Authorization"] == "Bearer t0ken"


def test_a_missing_credential_file_is_an_error_without_its_path(server: Server) -> None:
    endpoint = Endpoint(url=server.url, bearer_token_file="/nonexistent/secret/token")
    with pytest.raises(PrometheusError, match="credentials") as caught:
        query_value(endpoint, "up")
    assert "/nonexistent" not in str(caught.value)
    assert server.requests == []


def test_an_unreachable_endpoint_is_named_not_its_url() -> None:
    with pytest.raises(PrometheusError, match="unreachable") as caught:
        query_value(Endpoint(url="http://user:pw@127.0.0.1:9"), "up", timeout=1, name="down")
    assert "pw" not in str(caught.value) and "'down'" in str(caught.value)


def test_several_series_are_an_error(server: Server) -> None:
    two = {"value": [0, "1"]}
    server.answer = _json(
        {"status": "success", "data": {"resultType": "vector", "result": [two, two]}}
    )
    with pytest.raises(PrometheusError, match="2 series"):
        query_value(Endpoint(url=server.url), "up")
