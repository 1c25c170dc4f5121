"""uvicorn's httptools protocol, with each response leaving in one write.

uvicorn writes the status line and headers as soon as the app sends `http.response.start`, and
the body on `http.response.body`: two `write()` calls, so two TCP segments, and a client that
wakes up for the headers and again for the body. uvicorn has no option for it, and the fix fits
in a transport: `CorkedTransport` holds a write until the next one, and sends both as one
`writelines()` (one `writev`, no copy) then; a write that no other follows in the same turn of
the event loop goes out right after that turn. The body is never held, so the response leaves
as soon as the app sends it, not after whatever the app does next (metrics, logging).

`CloseWhileDraining` is the keep-alive half of a graceful stop: once SIGTERM has turned the
runtime not-ready, every response carries `Connection: close`, so uvicorn closes the connection
right after it and a keep-alive client opens its next one elsewhere (the pod has left the
Service's endpoints by then). Only connections that stayed idle through the whole drain window
are then closed by uvicorn's shutdown.
"""

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CloseWhileDraining", "CorkedTransport", "OneWriteHttpToolsProtocol"]

_CONNECTION_CLOSE = (b"connection", b"close")


class CorkedTransport(asyncio.Transport):
    """A transport that holds each write until the next one, or the end of the loop turn."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport
        self._held: list[bytes | bytearray | memoryview] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held:
            self._held.append(data)
            self._loop.call_soon(self.flush)
            return
        self._held.append(data)
        self.flush()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Passes on what is held: on the next write, after the turn that wrote it, on close."""
        if not self._held:
            return
        held, self._held = self._held, []
        if not self._transport.is_closing():
            self._transport.writelines(held)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(data) for data in self._held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a `CorkedTransport` (pass as `uvicorn.Config(http=)`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport))


class CloseWhileDraining:
    """ASGI middleware: while `draining()` is true, every HTTP response says `Connection: close`
    (uvicorn then closes the connection once the response is sent). Costs one call per request
    otherwise."""

    def __init__(self, app: ASGIApp, draining: Callable[[], bool]) -> None:
        self._app = app
        self._draining = draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._draining():
            await self._app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, _CONNECTION_CLOSE]}
            await send(message)

        await self._app(scope, receive, send_closing)
