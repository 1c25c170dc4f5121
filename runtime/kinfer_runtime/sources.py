"""Turns a model URI into a verified local file.

Paths and file:// URIs are used in place (the operator mounts pvc:// sources as paths).
http(s):// downloads stream into a hidden partial file next to the destination, resume with
HTTP Range requests after a dropped connection, are checked against the expected sha256, and
only then renamed into place: a crash or a bad download never leaves a file that looks
complete. A shared cache directory (the operator's cache volume, mounted read-only) is looked
up first: a file there was verified when the cache was filled, so it is not hashed again.
"""

import hashlib
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kinfer_runtime._download import Progress, download
from kinfer_runtime._objectstore import OBJECT_SCHEMES, ObjectStoreCredentials, presigned_url
from kinfer_runtime._sts import WebIdentityCredentials
from kinfer_runtime.errors import ModelLoadError

__all__ = [
    "MODEL_FILE_NAMES",
    "ObjectStore",
    "ObjectStoreCredentials",
    "Progress",
    "cache_entry",
    "redact",
    "resolve_model",
]

log = logging.getLogger(__name__)

# A directory holding this file is a bundle (kinfer_runtime.bundle reads it).
BUNDLE_MANIFEST: Final = "kinfer.yaml"
# When a URI names a directory without one, the model file inside it, in order of preference.
MODEL_FILE_NAMES: Final = ("model.onnx", "model.pt2", "model.pt")
_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class ObjectStore:
    """Where and how s3://, gs:// and azure:// URIs are fetched. Static `credentials` win;
    without them, s3:// signs with `web_identity`'s temporary credentials when there are."""

    endpoint: str | None = None
    region: str = "us-east-1"
    credentials: ObjectStoreCredentials | None = None
    web_identity: WebIdentityCredentials | None = None

    def signed_url(self, uri: str) -> str | Callable[[], str]:
        """The URL to fetch `uri` from; a callable (signing anew each time) when the
        credentials are temporary. ValueError for a malformed uri."""
        source = self.web_identity
        if self.credentials is None and source and urllib.parse.urlsplit(uri).scheme == "s3":
            presigned_url(uri, endpoint=self.endpoint)  # the uri's errors, up front
            return lambda: presigned_url(
                uri, endpoint=self.endpoint, region=self.region, credentials=source.get()
            )
        return presigned_url(
            uri, endpoint=self.endpoint, region=self.region, credentials=self.credentials
        )


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
    if path.is_dir() and (path / BUNDLE_MANIFEST).is_file():
        if sha256 is not None:
            raise ModelLoadError(f"{path} is a bundle directory: sha256 pins archives and files")
        return path  # a bundle: see kinfer_runtime.bundle
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


def cache_entry(url: str, cache_dir: Path, sha256: str | None) -> Path:
    """Where a download of `url` lives in a cache directory.

    Keyed by content when it is pinned (so a verified copy is reused across restarts and
    pods), by URL otherwise; the file keeps the URL's name so its extension still tells the
    format. The operator names cache-fill Jobs after the same key (sha256[:32]).
    """
    key = sha256.lower() if sha256 else hashlib.sha256(url.encode()).hexdigest()
    name = Path(urllib.parse.urlsplit(url).path).name or "model"
    return cache_dir / key[:32] / name


def resolve_model(
    uri: str,
    *,
    cache_dir: Path,
    sha256: str | None = None,
    auth_header: str | None = None,
    shared_cache_dir: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    object_store: ObjectStore | None = None,
) -> Path:
    """A local, verified model file, bundle directory or bundle archive for `uri` (a path,
    file://, http(s)://, s3://, gs:// or azure://). An archive is downloaded, pinned and cached
    like a model file; `bundle.open_bundle` extracts it."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("", "file"):
        raw = urllib.parse.unquote(parts.path) if parts.scheme == "file" else uri
        return _local(Path(raw), sha256)
    if parts.scheme not in ("http", "https", *OBJECT_SCHEMES):
        raise ModelLoadError(f"unsupported model URI scheme {parts.scheme!r}")
    if sha256 is not None and shared_cache_dir is not None:
        shared = cache_entry(uri, shared_cache_dir, sha256)
        if shared.is_file():
            # Verified once, when the cache was filled; renamed into place only after that.
            log.info("using %s from the shared model cache", shared)
            return shared
        log.info("%s is not in the shared model cache; downloading it", redact(uri))
    dest = cache_entry(uri, cache_dir, sha256)
    if sha256 is not None and dest.is_file():
        try:
            _check_digest(_sha256_of(dest), sha256, str(dest))
            log.info("using cached %s", dest)
            return dest
        except ModelLoadError:
            log.warning("cached %s does not match its sha256; downloading again", dest)
    shown = redact(uri)
    url: str | Callable[[], str] = uri
    if parts.scheme in OBJECT_SCHEMES:
        store = object_store or ObjectStore()
        try:
            url = store.signed_url(uri)
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from exc
    log.info("downloading %s", shown)
    download(
        url,
        dest,
        shown=shown,
        check=lambda actual: _check_digest(actual, sha256, shown),
        auth_header=auth_header,
        progress=progress,
    )
    return dest
