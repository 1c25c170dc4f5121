"""Turns a model URI into a verified local file.

Paths and file:// URIs are used in place (the operator mounts pvc:// sources as paths).
http(s):// downloads stream into a hidden temporary file next to the destination, are checked
against the expected sha256, and only then renamed into place: a crash or a bad download never
leaves a file that looks complete.
"""

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, Final

from kinfer_runtime.errors import ModelLoadError

__all__ = ["MODEL_FILE_NAMES", "redact", "resolve_model"]

log = logging.getLogger(__name__)

# When a URI names a directory, the model file inside it, in order of preference.
MODEL_FILE_NAMES: Final = ("model.onnx", "model.pt2", "model.pt")
_CHUNK: Final = 1 << 20
_DOWNLOAD_TIMEOUT_S: Final = 60.0


def redact(uri: str) -> str:
    """The URI without user info, query or fragment: presigned URLs carry secrets there."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_digest(actual: str, expected: str | None, what: str) -> None:
    if expected is not None and actual != expected.lower():
        raise ModelLoadError(
            f"sha256 mismatch for {what}: expected {expected.lower()}, got {actual}"
        )


def _local(path: Path, sha256: str | None) -> Path:
    if path.is_dir():
        found = next((path / n for n in MODEL_FILE_NAMES if (path / n).is_file()), None)
        if found is None:
            raise ModelLoadError(f"{path} is a directory without {' or '.join(MODEL_FILE_NAMES)}")
        path = found
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    if sha256 is not None:
        _check_digest(_sha256_of(path), sha256, str(path))
    return path


def _cache_path(url: str, cache_dir: Path, sha256: str | None) -> Path:
    # Keyed by content when it is pinned (so a verified copy is reused across restarts), by URL
    # otherwise; the file keeps the URL's name so its extension still tells the format.
    key = sha256.lower() if sha256 else hashlib.sha256(url.encode()).hexdigest()
    name = Path(urllib.parse.urlsplit(url).path).name or "model"
    return cache_dir / key[:32] / name


def _copy_hashing(response: BinaryIO, out: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := response.read(_CHUNK):
        digest.update(chunk)
        out.write(chunk)
    return digest.hexdigest()


def _download(url: str, dest: Path, sha256: str | None, auth_header: str | None) -> None:
    shown = redact(url)
    request = urllib.request.Request(url)
    if auth_header:
        # "Unredirected": urllib would otherwise forward the credential to whatever host a
        # redirect points at.
        request.add_unredirected_header("Authorization", auth_header)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                expected_length = response.headers.get("Content-Length")
                actual = _copy_hashing(response, out)
                written = out.tell()
            if expected_length is not None and written != int(expected_length):
                raise ModelLoadError(
                    f"download of {shown} truncated: {written} of {expected_length} bytes"
                )
            out.flush()
            os.fsync(out.fileno())
        _check_digest(actual, sha256, shown)
        os.replace(partial, dest)
    except urllib.error.HTTPError as exc:
        raise ModelLoadError(f"download of {shown} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise ModelLoadError(f"download of {shown} failed: {exc}") from exc
    finally:
        Path(partial).unlink(missing_ok=True)


def resolve_model(
    uri: str, *, cache_dir: Path, sha256: str | None = None, auth_header: str | None = None
) -> Path:
    """A local, verified model file for `uri` (a path, file://, http:// or https://)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("", "file"):
        raw = urllib.parse.unquote(parts.path) if parts.scheme == "file" else uri
        return _local(Path(raw), sha256)
    if parts.scheme not in ("http", "https"):
        raise ModelLoadError(f"unsupported model URI scheme {parts.scheme!r}")
    dest = _cache_path(uri, cache_dir, sha256)
    if sha256 is not None and dest.is_file():
        try:
            _check_digest(_sha256_of(dest), sha256, str(dest))
            log.info("using cached %s", dest)
            return dest
        except ModelLoadError:
            log.warning("cached %s does not match its sha256; downloading again", dest)
    log.info("downloading %s", redact(uri))
    _download(uri, dest, sha256, auth_header)
    return dest
