"""Resumable HTTP download with retries, progress and an integrity check before the rename.

Plain urllib rather than requests or httpx: the runtime image already has it, a Range resume
is three headers, and the caller needs the byte stream to hash as it writes.
"""

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from kinfer_runtime.errors import ModelLoadError

__all__ = ["ATTEMPTS", "Progress", "download"]

log = logging.getLogger(__name__)

ATTEMPTS: Final = 5
_BACKOFF_S = 1.0
"""First pause between attempts, doubling; tests set it to 0."""
_CHUNK: Final = 1 << 20
_TIMEOUT_S: Final = 60.0
_RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


@dataclass
class Progress:
    """Bytes so far of one download; `total` is None until the server says."""

    done: int = 0
    total: int | None = None
    seconds: float = 0.0
    attempts: int = 0


class _Retry(Exception):
    """This attempt failed in a way a later one may not."""


def _hash_prefix(path: Path) -> "hashlib._Hash":
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest


def _attempt(
    url: str,
    partial: Path,
    auth_header: str | None,
    state: Progress,
    report: Callable[[], None],
) -> "hashlib._Hash":
    """One request: resume from the partial file when the server honours Range."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url)
    if auth_header:
        # "Unredirected": urllib would otherwise forward the credential to whatever host a
        # redirect points at.
        request.add_unredirected_header("Authorization", auth_header)
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already whole
            state.done = state.total = have
            return _hash_prefix(partial)
        if exc.code in _RETRYABLE_HTTP:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from exc
        raise
    with response:
        resumed = response.status == 206
        if resumed:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != have:
                raise _Retry("the server answered a Range request with another range")
            state.total = int(match.group(2)) if match.group(2) != "*" else None
            digest = _hash_prefix(partial)
        else:
            have = 0
            length = response.headers.get("Content-Length")
            state.total = int(length) if length is not None else None
            digest = hashlib.sha256()
        state.done = have
        with partial.open("ab" if resumed else "wb") as out:
            _copy(response, out, digest, state, report)
            out.flush()
            os.fsync(out.fileno())
    if state.total is not None and state.done != state.total:
        raise _Retry(f"truncated: {state.done} of {state.total} bytes")
    return digest


def _copy(
    response: BinaryIO,
    out: BinaryIO,
    digest: "hashlib._Hash",
    state: Progress,
    report: Callable[[], None],
) -> None:
    try:
        while chunk := response.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            state.done += len(chunk)
            report()
    except (http.client.HTTPException, OSError) as exc:
        raise _Retry(f"connection lost after {state.done} bytes: {exc}") from exc


def download(
    url: str | Callable[[], str],
    dest: Path,
    *,
    shown: str,
    check: Callable[[str], None],
    auth_header: str | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> None:
    """Fetch `url` into `dest`, resuming after failures; `check(sha256_hex)` runs before the
    rename and raises to refuse the file. Errors are `ModelLoadError`s naming `shown`.
    A callable `url` is asked again for every attempt (signatures from expiring credentials)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent / f".{dest.name}.partial"
    state = Progress()
    started = time.monotonic()

    def report() -> None:
        state.seconds = time.monotonic() - started
        if progress is not None:
            progress(state)

    delay = _BACKOFF_S
    try:
        for attempt in range(1, ATTEMPTS + 1):
            state.attempts = attempt
            try:
                target = url() if callable(url) else url
                digest = _attempt(target, partial, auth_header, state, report)
                break
            except (_Retry, urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    raise
                if attempt == ATTEMPTS:
                    raise ModelLoadError(
                        f"download of {shown} failed after {attempt} attempts: {exc}"
                    ) from exc
                log.warning("download of %s: %s; attempt %d resumes", shown, exc, attempt + 1)
                time.sleep(delay)
                delay *= 2
        report()
        check(digest.hexdigest())
        os.replace(partial, dest)
    except urllib.error.HTTPError as exc:
        raise ModelLoadError(f"download of {shown} failed: HTTP {exc.code} {exc.reason}") from exc
    except OSError as exc:
        raise ModelLoadError(f"download of {shown} failed: {exc}") from exc
    finally:
        # Kept only while attempts remain: a refused or abandoned file never lingers.
        partial.unlink(missing_ok=True)
