"""`kinfer-runtime fill-cache`: download one model version into the shared cache, then evict.

The operator runs this in a Job before a revision's pods start. The version is verified
(sha256) here, once; serving pods trust what they find. Eviction runs here too because only
a process that mounts the volume sees what it holds; the operator says which versions are
live (KINFER_CACHE_KEEP) and those are never deleted.

Progress goes to stdout as `kinfer-progress done=<bytes> total=<bytes>` lines, which the
operator tails from the pod's log while the Job runs: no credentials in the pod, and no API
calls once the cache is filled.
"""

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from kinfer_runtime._sts import credentials_from_env
from kinfer_runtime.errors import ModelLoadError
from kinfer_runtime.sources import (
    ObjectStore,
    ObjectStoreCredentials,
    Progress,
    cache_entry,
    redact,
    resolve_model,
)

__all__ = [
    "ENV_CACHE_KEEP",
    "ENV_CACHE_MAX_BYTES",
    "FILL_ENV",
    "PROGRESS_PREFIX",
    "Entry",
    "choose_evictions",
    "fill",
    "main",
]

log = logging.getLogger(__name__)

ENV_CACHE_KEEP: Final = "KINFER_CACHE_KEEP"
"""Comma-separated cache keys (sha256[:32]) of the model's live revisions."""
ENV_CACHE_MAX_BYTES: Final = "KINFER_CACHE_MAX_BYTES"
FILL_ENV: Final = (
    "KINFER_MODEL_URI",
    "KINFER_MODEL_SHA256",
    "KINFER_MODEL_AUTH_HEADER",
    "KINFER_SHARED_CACHE_DIR",
    "KINFER_MODEL_ENDPOINT",
    "KINFER_MODEL_REGION",
    "KINFER_MODEL_ACCESS_KEY_ID",
    "KINFER_MODEL_SECRET_ACCESS_KEY",
    ENV_CACHE_KEEP,
    ENV_CACHE_MAX_BYTES,
)
"""Everything the fill command reads; the operator's contract test checks it sets no other."""
PROGRESS_PREFIX: Final = "kinfer-progress"
_REPORT_EVERY_S: Final = 1.0


@dataclass(frozen=True)
class Entry:
    """One cached version: its key directory, size and when it was last filled or reused."""

    key: str
    size: int
    touched: float


def entries(root: Path) -> list[Entry]:
    """The versions under `root`; partial downloads count towards their version's size."""
    out = []
    for path in root.iterdir() if root.is_dir() else ():
        if path.is_dir():
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            out.append(Entry(path.name, size, path.stat().st_mtime))
    return out


def choose_evictions(
    cached: Sequence[Entry], keep: Collection[str], max_bytes: int | None
) -> list[str]:
    """Keys to delete, least recently touched first, until the rest fits in `max_bytes`.

    Versions in `keep` are never chosen, even when they alone exceed the limit.
    """
    if max_bytes is None:
        return []
    total = sum(e.size for e in cached)
    evicted = []
    for entry in sorted(cached, key=lambda e: (e.touched, e.key)):
        if total <= max_bytes:
            break
        if entry.key in keep:
            continue
        evicted.append(entry.key)
        total -= entry.size
    return evicted


def _reporter(out: TextIO) -> Callable[[Progress], None]:
    last = [0.0]

    def report(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= _REPORT_EVERY_S or (p.total is not None and p.done == p.total):
            last[0] = now
            total = p.total if p.total is not None else "?"
            print(f"{PROGRESS_PREFIX} done={p.done} total={total}", file=out, flush=True)

    return report


def fill(
    uri: str,
    sha256: str,
    root: Path,
    *,
    auth_header: str | None = None,
    keep: Collection[str] = (),
    max_bytes: int | None = None,
    object_store: ObjectStore | None = None,
    out: TextIO = sys.stdout,
) -> str:
    """Make `root` hold the verified version; returns a one-line summary for the operator."""
    started = time.monotonic()
    entry = cache_entry(uri, root, sha256)
    if entry.is_file():
        os.utime(entry.parent)  # reused: the most recently used version now
        how = "already cached"
    else:
        resolve_model(
            uri,
            cache_dir=root,
            sha256=sha256,
            auth_header=auth_header,
            progress=_reporter(out),
            object_store=object_store,
        )
        how = "downloaded"
    size = entry.stat().st_size
    live = {*keep, entry.parent.name}
    evicted = choose_evictions(entries(root), live, max_bytes)
    for key in evicted:
        shutil.rmtree(root / key, ignore_errors=True)
    seconds = time.monotonic() - started
    summary = f"{how} {size / 2**20:.0f} MiB in {seconds:.1f}s"
    if evicted:
        summary += f"; evicted {', '.join(evicted)}"
    return summary


def _object_store(environ: Mapping[str, str]) -> ObjectStore:
    key_id = environ.get("KINFER_MODEL_ACCESS_KEY_ID")
    secret = environ.get("KINFER_MODEL_SECRET_ACCESS_KEY")
    region = environ.get("KINFER_MODEL_REGION") or "us-east-1"
    keys = ObjectStoreCredentials(key_id, secret) if key_id and secret else None
    return ObjectStore(
        environ.get("KINFER_MODEL_ENDPOINT") or None,
        region,
        keys,
        None if keys else credentials_from_env(environ, region),
    )


def main(environ: Mapping[str, str], termination_log: Path | None) -> int:
    """Runs the fill from the environment the operator sets; exit 1 with a message on error."""
    uri = environ["KINFER_MODEL_URI"]
    max_bytes = environ.get(ENV_CACHE_MAX_BYTES)
    try:
        summary = fill(
            uri,
            environ["KINFER_MODEL_SHA256"],
            Path(environ["KINFER_SHARED_CACHE_DIR"]),
            auth_header=environ.get("KINFER_MODEL_AUTH_HEADER") or None,
            keep=[k for k in environ.get(ENV_CACHE_KEEP, "").split(",") if k],
            max_bytes=int(max_bytes) if max_bytes else None,
            object_store=_object_store(environ),
        )
        code = 0
    except (ModelLoadError, OSError) as exc:
        summary = f"cannot cache {redact(uri)}: {exc}"
        code = 1
    (log.info if code == 0 else log.error)("%s", summary)
    if termination_log is not None:
        try:
            termination_log.write_text(summary[:4000])
        except OSError:
            log.warning("cannot write %s", termination_log)
    return code
