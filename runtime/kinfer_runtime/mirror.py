"""Shadow traffic: the stable runtime re-sends a share of the requests it answered to a
candidate revision, whose answers are discarded.

Why here and not in a gateway: kinfer owns the runtime, so mirroring works in every traffic
mode (ReplicaRatio included) with no gateway or mesh, and the gateway kinfer tests on does not
implement the HTTPRoute RequestMirror filter. Why it cannot slow the stable path: `offer` only
samples and does a non-blocking put into a queue bounded by count and by bytes (a full queue
drops and counts the drop); a fixed number of worker tasks send, each with a timeout. The byte
bound counts the copies being sent too, so a target that never answers costs at most
`max_queue_bytes` of memory, whatever the count allows.

The operator turns mirroring on and off by rewriting a ConfigMap mounted into the pod; the
kubelet swaps the file in place, so the stable pods are never restarted. The file is polled
with a cheap `stat` and re-read only when it changed. An absent or empty file means off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kinfer_runtime._post import PostConnection, PostError
from kinfer_runtime.metrics import RuntimeMetrics

__all__ = ["SHADOW_HEADER", "Mirror", "MirrorConfig", "read_config"]

SHADOW_HEADER: Final = "x-kinfer-shadow"
"""Marks a mirrored request; its value is the stable revision that sent it. The candidate
counts such requests with `source="shadow"`, so its analysis reads them apart, but only on its
classified port, where the operator points the mirror (the target in the shadow config)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MirrorConfig:
    """What the operator wrote into the shadow ConfigMap."""

    host: str
    """The candidate's address (its shadow Service's ClusterIP; the port is its classified one)."""
    port: int
    percent: float
    """Share of answered requests to mirror, 0-100."""
    revision: str = ""
    """The candidate revision, for logs."""
    timeout_s: float = 5.0
    max_queue: int = 256
    max_concurrency: int = 4
    max_queue_bytes: int = 64 * 1024 * 1024
    """Request bodies queued or being sent, all together; beyond it copies are dropped."""


def read_config(path: Path) -> MirrorConfig | None:
    """The mirror settings in `path`; None when mirroring is off or the file is unusable."""
    try:
        raw = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable shadow config %s: %s", path, exc)
        return None
    if not isinstance(raw, dict) or not raw.get("target") or not raw.get("percent"):
        return None
    try:
        url = urllib.parse.urlsplit(str(raw["target"]))
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"target must be http://host[:port], got {raw['target']!r}")
        return MirrorConfig(
            host=url.hostname,
            port=url.port or 80,
            percent=min(max(float(raw["percent"]), 0.0), 100.0),
            revision=str(raw.get("revision", "")),
            timeout_s=float(raw.get("timeoutSeconds", 5.0)),
            max_queue=max(int(raw.get("maxQueue", 256)), 1),
            max_concurrency=max(int(raw.get("maxConcurrency", 4)), 1),
            max_queue_bytes=max(int(raw.get("maxQueueBytes", MirrorConfig.max_queue_bytes)), 1),
        )
    except (TypeError, ValueError) as exc:
        log.warning("ignoring invalid shadow config %s: %s", path, exc)
        return None


_KEPT_HEADERS: Final = frozenset({b"content-type", b"inference-header-content-length"})
"""What the candidate needs to decode the body; the body was already inflated."""


@dataclass(frozen=True)
class _Copy:
    path: str
    headers: dict[str, str]
    body: bytes


class Mirror:
    """Samples answered requests into a bounded queue that worker tasks drain to the target.

    Sampling is deterministic (an accumulator, not a coin): 20% mirrors exactly every fifth
    request, so a test or an analysis window sees the share it asked for.
    """

    def __init__(
        self,
        metrics: RuntimeMetrics,
        revision: str = "",
        config_path: Path | None = None,
        poll_s: float = 2.0,
    ) -> None:
        self._metrics = metrics
        self._revision = revision
        self._path = config_path
        self._poll_s = poll_s
        self._stamp: tuple[int, int, int] | None = None
        self._config: MirrorConfig | None = None
        self._credit = 0.0
        self._queue: asyncio.Queue[_Copy] | None = None
        self._held_bytes = 0  # bodies queued or being sent
        self._workers: list[asyncio.Task[None]] = []
        self._watcher: asyncio.Task[None] | None = None

    @property
    def config(self) -> MirrorConfig | None:
        return self._config

    def offer(self, path: str, raw_headers: Iterable[tuple[bytes, bytes]], body: bytes) -> None:
        """Called after a request was answered: O(1), never waits, never raises."""
        config, queue = self._config, self._queue
        if config is None or queue is None:
            return
        self._credit += config.percent
        if self._credit < 100.0:
            return
        self._credit -= 100.0
        if self._held_bytes + len(body) > config.max_queue_bytes:
            self._metrics.shadow_done("dropped")
            return
        headers = {k.decode(): v.decode("latin-1") for k, v in raw_headers if k in _KEPT_HEADERS}
        headers[SHADOW_HEADER] = self._revision or "stable"
        try:
            queue.put_nowait(_Copy(path, headers, body))
        except asyncio.QueueFull:
            self._metrics.shadow_done("dropped")
            return
        self._held_bytes += len(body)
        self._metrics.shadow_queue_depth(queue.qsize())

    async def start(self) -> None:
        """Watch the config file (if any); must run on the serving event loop."""
        if self._path is not None:
            await self.reload()
            self._watcher = asyncio.create_task(self._watch(), name="kinfer-shadow-watch")

    async def reload(self) -> None:
        """Re-read the config file when its stat changed; restart the workers on a change."""
        assert self._path is not None
        try:
            st = os.stat(self._path)
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        config = read_config(self._path) if stamp is not None else None
        if config is not None and config.revision and config.revision == self._revision:
            config = None  # the candidate mounts the same file: it never mirrors to itself
        if config != self._config:
            await self.configure(config)

    async def configure(self, config: MirrorConfig | None) -> None:
        """Switch to `config` (None: off). Copies queued for the old target are dropped."""
        await self._stop_workers()
        self._config, self._credit = config, 0.0
        if config is None:
            log.info("shadow mirroring off")
            return
        self._queue = asyncio.Queue(maxsize=config.max_queue)
        # One connection per worker: at most max_concurrency copies in flight, each kept alive.
        self._workers = [
            asyncio.create_task(self._send_loop(self._queue, config))
            for _ in range(config.max_concurrency)
        ]
        log.info(
            "shadow mirroring %g%% of answered requests to %s:%d (revision %s)",
            config.percent,
            config.host,
            config.port,
            config.revision or "?",
        )

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._stop_workers()
        self._config = None

    async def _stop_workers(self) -> None:
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._queue = None
        self._held_bytes = 0  # the queue and its copies are gone with it
        self._metrics.shadow_queue_depth(0)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.reload()
            except Exception:  # a watcher that dies would leave mirroring stuck on
                log.exception("shadow config reload failed")

    async def _send_loop(self, queue: asyncio.Queue[_Copy], config: MirrorConfig) -> None:
        connection = PostConnection(config.host, config.port)
        try:
            while True:
                copy = await queue.get()
                self._metrics.shadow_queue_depth(queue.qsize())
                try:
                    await connection.post(copy.path, copy.headers, copy.body, config.timeout_s)
                except PostError as exc:
                    log.debug("shadow request failed: %s", exc)
                    self._metrics.shadow_done("failed")
                else:
                    self._metrics.shadow_done("mirrored")
                finally:
                    self._held_bytes -= len(copy.body)
        finally:
            await connection.close()
