"""Reads a request body without ever holding more than the configured limit.

Bodies sent with `Content-Encoding: gzip` or `deflate` (Triton's client offers both) are
inflated here, under the same limit, so a small compressed bomb cannot exhaust memory.
Each body is charged to the byte budget (`BodyCharge`) before it is read when its size is
declared, and as it arrives when it is not, so a refused body is never read.
"""

import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Final

from starlette.requests import ClientDisconnect

from kinfer_runtime.errors import InvalidInput, PayloadTooLarge
from kinfer_runtime.routes._admission import BodyCharge

__all__ = ["read_body"]

# zlib window bits: 16 + 15 expects a gzip wrapper, 15 a zlib (RFC 1950) one.
_WBITS: Final = {"gzip": 31, "x-gzip": 31, "deflate": 15}


async def _read_raw(
    stream: AsyncIterator[bytes], headers: Mapping[str, str], limit: int, charge: BodyCharge
) -> bytes:
    declared = headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidInput("Content-Length is not an integer") from None
        if size > limit:
            raise PayloadTooLarge(f"request body of {size} bytes exceeds the {limit} byte limit")
        charge.cover(size)
    chunks = []
    received = 0
    try:
        async for chunk in stream:  # chunked uploads have no Content-Length to check
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"request body exceeds the {limit} byte limit")
            charge.cover(received)  # a no-op within a declared size
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody will read the answer; a client-side cause all the same, not a server error.
        raise InvalidInput("client disconnected while sending the body") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise InvalidInput(f"unsupported Content-Encoding {encoding!r} (gzip or deflate)")
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"body is not valid {encoding}: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed request body exceeds the {limit} byte limit")
    if not inflater.eof:
        raise InvalidInput(f"body is truncated {encoding}")
    return data


async def read_body(
    stream: AsyncIterator[bytes], headers: Mapping[str, str], limit: int, charge: BodyCharge
) -> bytes:
    """The whole body of a request, given its body stream and headers (lower-case names).

    The caller releases `charge` once the request is answered: the body lives until then.
    """
    body = await _read_raw(stream, headers, limit, charge)
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    inflated = _inflate(body, encoding, limit)
    charge.cover(len(inflated))
    return inflated
