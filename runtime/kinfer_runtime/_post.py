"""One persistent HTTP/1.1 connection that POSTs a body and reads the answer's status.

Why not httpx (or aiohttp): the mirror runs on the stable runtime's own event loop, so every
microsecond it spends per copy is taken from serving users. In `bench/shadow.py` on the shared
2-core VM (one noisy run each), 20% mirroring through httpx cost the stable runtime 37% of its
throughput; through this connection the 20% row was within noise of mirroring off. It does
only what the mirror needs: keep-alive, a Content-Length or chunked answer, a deadline. It
speaks plain HTTP: the mirror's target is an in-cluster ClusterIP, never a TLS endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["PostConnection", "PostError"]


class PostError(Exception):
    """No usable answer: connection refused or lost, malformed answer, or the deadline."""


class PostConnection:
    """Sequential POSTs over one connection, reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, headers: dict[str, str], body: bytes, timeout_s: float) -> int:
        """Send the request and read the whole answer; returns its status code."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._exchange(path, headers, body)
        except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
            await self.close()
            raise PostError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, path: str, headers: dict[str, str], body: bytes) -> int:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        lines = [f"POST {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.writelines([("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body])
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP/1.x answer: {status_line[:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked, close = False, parts[0] == b"HTTP/1.0"
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            key, value = name.strip().lower(), value.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value
            elif key == b"connection":
                close = value == b"close"
        if chunked:
            while size := int((await reader.readline()).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readline()  # the empty line after the last chunk (no trailers sent)
        elif length is not None:
            await reader.readexactly(length)
        else:
            close = True  # the body runs to the end of the connection: read it, then reopen
            await reader.read()
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
