"""The HTTP protocol: a response leaves in one write, and nothing written is ever lost."""

import asyncio
from typing import Any

import pytest
import uvicorn
from kinfer_runtime._http import CorkedTransport, OneWriteHttpToolsProtocol
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


class RecordingTransport(asyncio.Transport):
    """The socket side: every write() and writelines() call, as the kernel would see it."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.writes.append(b"".join(bytes(data) for data in list_of_data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    headers = [(b"content-length", b"5"), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


async def _serve_one(protocol_class: type[HttpToolsProtocol]) -> list[bytes]:
    config = uvicorn.Config(_app, lifespan="off", log_config=None, access_log=False)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(b"GET /x HTTP/1.1\r\nhost: test\r\n\r\n")
    for _ in range(20):  # the request task, then the flush after its turn
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport.writes


def test_a_response_leaves_in_one_write_headers_and_body_together() -> None:
    writes = asyncio.run(_serve_one(OneWriteHttpToolsProtocol))
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\nhello")
    # uvicorn's own protocol writes the same bytes in two pieces, which is what this avoids.
    plain = asyncio.run(_serve_one(HttpToolsProtocol))
    assert len(plain) == 2
    assert b"".join(plain) == writes[0]


def test_corked_writes_flush_after_the_turn_in_order() -> None:
    asyncio.run(_corked_writes_flush_after_the_turn_in_order())


async def _corked_writes_flush_after_the_turn_in_order() -> None:
    socket_side = RecordingTransport()
    corked = CorkedTransport(socket_side)
    corked.write(b"a")
    corked.write(b"")
    assert socket_side.writes == []  # held for the next write, or the end of the turn
    assert corked.get_write_buffer_size() == 1
    corked.writelines([b"b", memoryview(b"c")])
    assert socket_side.writes == [b"ab"]  # the second write takes the first along at once
    await asyncio.sleep(0)
    assert socket_side.writes == [b"ab", b"c"]  # a lone write leaves after its turn
    corked.write(b"d")
    await asyncio.sleep(0)
    assert socket_side.writes == [b"ab", b"c", b"d"]


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    asyncio.run(_close_sends_what_is_held_first_and_abort_drops_it())


async def _close_sends_what_is_held_first_and_abort_drops_it() -> None:
    socket_side = RecordingTransport()
    corked = CorkedTransport(socket_side)
    corked.write(b"last words")
    corked.close()
    assert socket_side.writes == [b"last words"]
    assert socket_side.closed

    aborted_side = RecordingTransport()
    aborted = CorkedTransport(aborted_side)
    aborted.write(b"never sent")
    aborted.abort()
    await asyncio.sleep(0)
    assert aborted_side.writes == []
    assert aborted_side.closed


@pytest.mark.parametrize("name", ["peername", "sockname"])
def test_connection_details_come_from_the_socket(name: str) -> None:
    async def details() -> object:
        return CorkedTransport(RecordingTransport()).get_extra_info(name)

    assert asyncio.run(details()) == RecordingTransport().get_extra_info(name)
