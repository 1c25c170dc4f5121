"""The mirror's HTTP/1.1 connection against a scripted server: framing, keep-alive, deadline."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from kinfer_runtime._post import PostConnection, PostError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


async def _with_server(handler: Handler, client: Callable[[int], Awaitable[object]]) -> object:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await client(port)
    finally:
        server.close()


def test_keep_alive_answers_with_content_length_and_chunks_share_one_connection() -> None:
    connections: list[int] = []
    requests: list[bytes] = []
    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 500 Error\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nbad\r\n0\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        for answer in answers:
            requests.append(await _read_request(reader))
            writer.write(answer)
            await writer.drain()
        writer.close()

    async def client(port: int) -> list[int]:
        connection = PostConnection("127.0.0.1", port)
        codes = [
            await connection.post("/v2/models/m/infer", {"x-kinfer-shadow": "r1"}, b"{}", 5)
            for _ in answers
        ]
        await connection.close()
        return codes

    assert asyncio.run(_with_server(handler, client)) == [200, 500, 404]
    assert len(connections) == 1
    assert requests[0].startswith(b"POST /v2/models/m/infer HTTP/1.1\r\n")
    assert b"x-kinfer-shadow: r1\r\n" in requests[0] and requests[0].endswith(b"\r\n\r\n{}")


def test_a_closed_connection_is_reopened_for_the_next_post() -> None:
    connections: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def client(port: int) -> list[int]:
        connection = PostConnection("127.0.0.1", port)
        return [await connection.post("/", {}, b"a", 5) for _ in range(3)]

    assert asyncio.run(_with_server(handler, client)) == [200, 200, 200]
    assert len(connections) == 3


def test_no_answer_within_the_deadline_is_an_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def client(port: int) -> object:
        return await PostConnection("127.0.0.1", port).post("/", {}, b"a", 0.2)

    with pytest.raises(PostError, match="TimeoutError"):
        asyncio.run(_with_server(handler, client))


def test_a_refused_connection_is_an_error() -> None:
    async def client() -> object:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return await PostConnection("127.0.0.1", port).post("/", {}, b"a", 2)

    with pytest.raises(PostError):
        asyncio.run(client())
