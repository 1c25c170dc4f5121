"""Wires the settings into a served model: fetch, load, warm up, batch; then drain and close."""

import asyncio
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping

import numpy as np

from kinfer_runtime.backends import Backend, BackendOptions, open_backend
from kinfer_runtime.bundle import Bundle, open_bundle
from kinfer_runtime.config import Settings, object_store
from kinfer_runtime.dataplane import Batcher, BatchPolicy, ModelRegistry, Readiness, ServedModel
from kinfer_runtime.dataplane.budget import ByteBudget, container_memory_limit, default_budget
from kinfer_runtime.dataplane.handling import HandlerRunner
from kinfer_runtime.dataplane.response_cache import ResponseCache
from kinfer_runtime.dataplane.warmup import warm_up, warmup_batch_sizes
from kinfer_runtime.errors import ModelLoadError
from kinfer_runtime.handlers import HandlerContext
from kinfer_runtime.handlers._loader import load_handler
from kinfer_runtime.metrics import RuntimeMetrics
from kinfer_runtime.mirror import Mirror
from kinfer_runtime.sources import Progress, redact, resolve_model
from kinfer_runtime.tracing import Tracing, tracing_from_env

__all__ = ["InferenceService"]

log = logging.getLogger(__name__)

TEST_SLOW_START_ENV = "KINFER_TEST_SLOW_START_S"
"""TEST ONLY (the warm-up e2e case): every batch of the first this many seconds after Ready
takes TEST_SLOW_START_DELAY_S longer, like a model that JIT-compiles or fills caches."""
TEST_SLOW_START_DELAY_S = 1.0
TEST_SLOWDOWN_ENV = "KINFER_TEST_SLOWDOWN"
"""TEST ONLY (bench/least_queue.py's slow replica): a factor >= 1; each batch's inference is
followed by a sleep of (factor - 1) x the time it took, so 2 is half speed. Absent or invalid: 1."""

# A lone request runs on the event loop thread (no worker hand-off) when the model's last lone
# run took at most this long and no queue delay is set; longer runs would stall other
# connections and probes. See dataplane.batcher.
INLINE_MAX_S = 0.01


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        on_fatal: Callable[[str], None] | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.settings = settings
        self.readiness = Readiness()
        self.metrics = RuntimeMetrics(
            settings.model_name, settings.model_version, settings.revision
        )
        self.model = ServedModel(settings.model_name, settings.model_version, self.readiness)
        if settings.response_cache_bytes:
            # Only set for models the operator knows are deterministic (spec.model).
            identity = "\0".join((settings.model_name, settings.model_version, settings.revision))
            self.model.response_cache = ResponseCache(
                identity, settings.response_cache_bytes, self.metrics
            )
        # Off (None) unless OTEL_TRACES_EXPORTER=otlp: see kinfer_runtime.tracing.
        self.tracing: Tracing | None = tracing_from_env(environ, "kinfer-runtime")
        self.registry = ModelRegistry()
        self.registry.add(self.model)
        self.mirror = Mirror(self.metrics, settings.revision, settings.shadow_config)
        # Request memory in flight, shared by REST and gRPC.
        self.budget = ByteBudget(
            settings.max_inflight_bytes or default_budget(container_memory_limit())
        )
        self.failure: str | None = None
        self._on_fatal = on_fatal

    async def start(self) -> None:
        """Loads the model off the event loop; marks ready, or reports a fatal error."""
        started = time.perf_counter()
        try:
            backend, policy, handler = await asyncio.to_thread(self._load)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
            self.fail(
                f"cannot serve model {self.settings.model_name!r} from "
                f"{redact(self.settings.model_uri)}: {reason}"
            )
            return
        infer: Infer = backend.infer
        slow_start_s = _test_slow_start_s(os.environ)
        if slow_start_s:
            infer = _slow_start(infer, slow_start_s)
            policy = dataclasses.replace(policy, inline_max_s=0.0)  # never sleep on the loop
        slowdown = _test_slowdown(os.environ)
        if slowdown > 1.0:
            infer = _slowed_down(infer, slowdown)
            policy = dataclasses.replace(policy, inline_max_s=0.0)  # never sleep on the loop
        batcher = Batcher(infer, policy, self.metrics)
        batcher.start()
        self.model.attach(backend, batcher, handler)
        seconds = time.perf_counter() - started
        self.metrics.model_load_seconds.set(seconds)
        if backend.device.startswith("cuda"):
            self.metrics.watch_gpu(int(backend.device.partition(":")[2] or 0))
        self.readiness.mark_ready()
        self.metrics.start_warmup_window(self.settings.warmup_window_s)
        log.info(
            "model %r ready in %.2fs on %s (%s)", self.model.name, seconds, backend.device, policy
        )

    def fail(self, message: str) -> None:
        """Reports a fatal error: never ready, and the process is to exit."""
        if self.failure is None:
            self.failure = message
        self.readiness.mark_failed()
        if self._on_fatal is not None:
            self._on_fatal(message)

    def _download_progress(self, progress: Progress) -> None:
        self.metrics.model_download_bytes.set(progress.done)
        self.metrics.model_download_seconds.set(progress.seconds)

    def _handler(self, bundle: Bundle, backend: Backend) -> HandlerRunner | None:
        manifest = bundle.manifest
        spec = (manifest.handler if manifest else None) or self.settings.handler
        if spec is None:
            return None
        context = HandlerContext(
            root=bundle.root,
            signature=backend.signature,
            labels=bundle.labels,
            options=manifest.handler_options if manifest else {},
        )
        return HandlerRunner(load_handler(spec, context), self.settings.handler_threads)

    def _load(self) -> tuple[Backend, BatchPolicy, HandlerRunner | None]:
        s = self.settings
        path = resolve_model(
            s.model_uri,
            cache_dir=s.model_cache_dir,
            sha256=s.model_sha256,
            auth_header=s.model_auth_header,
            shared_cache_dir=s.shared_cache_dir,
            progress=self._download_progress,
            object_store=object_store(s),
        )
        # A bare file, a bundle directory, or an archive extracted into the cache directory.
        bundle = open_bundle(path, s.model_cache_dir, fmt=s.model_format)
        options = BackendOptions(
            device=s.device,
            torch_dtype=s.torch_dtype,
            threads=s.threads,
            cache_dir=s.model_cache_dir,
            signature=bundle.signature,
        )
        backend = open_backend(bundle.model_path, bundle.format, options)
        backend.load()
        handler = self._handler(bundle, backend)
        batchable = backend.signature.batchable
        # With one row per batch every batch already has the same size: nothing to pad.
        pad = (
            batchable
            and s.max_batch_size > 1
            and (
                s.batch_padding == "always"
                or (s.batch_padding == "auto" and not backend.batch_invariant)
            )
        )
        on_gpu = backend.device != "cpu"
        sizes = warmup_batch_sizes(s.max_batch_size, padded=pad, on_gpu=on_gpu)
        batchable = warm_up(backend, sizes, batchable=batchable)
        policy = BatchPolicy(
            max_batch_size=s.max_batch_size if batchable else 1,
            max_queue_delay_s=s.max_queue_delay_us / 1e6,
            max_queue_size=s.max_queue_size,
            timeout_s=s.request_timeout_s,
            batchable=batchable,
            pad_to_max=pad and batchable,
            priority_levels=s.priority_levels,
            default_priority=s.default_priority,
            inline_max_s=INLINE_MAX_S,
            # On a CPU a batch of n rows costs n rows: lower-priority filler would only delay
            # the higher-priority rows it joins, for no throughput.
            mix_priority_levels=on_gpu,
            # On a CPU a level-1 request arriving under a lower-priority flood waits for the
            # batch in progress: one row, not max_batch_size rows.
            lower_priority_max_batch_size=s.lower_priority_max_batch_size
            or (None if on_gpu else 1),
        )
        return backend, policy, handler

    async def stop(self) -> None:
        """Finishes queued work, then releases the model."""
        self.readiness.begin_drain()
        await self.mirror.stop()
        batcher = self.model.batcher
        if batcher is not None:
            await batcher.stop()
        if self.model.loaded:
            self.model.backend.close()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # flushes buffered spans
        if self.model.handler is not None:
            self.model.handler.close()


Infer = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def _test_slow_start_s(environ: Mapping[str, str]) -> float:
    try:
        return max(float(environ.get(TEST_SLOW_START_ENV) or 0), 0.0)
    except ValueError:
        return 0.0


def _slow_start(infer: Infer, seconds: float) -> Infer:
    """TEST ONLY: `infer`, TEST_SLOW_START_DELAY_S slower for `seconds` from now (just
    before Ready)."""
    until = time.monotonic() + seconds

    def slow(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if time.monotonic() < until:
            time.sleep(TEST_SLOW_START_DELAY_S)
        return infer(inputs)

    return slow


def _test_slowdown(environ: Mapping[str, str]) -> float:
    try:
        factor = float(environ.get(TEST_SLOWDOWN_ENV) or 1)
    except ValueError:
        return 1.0
    return factor if math.isfinite(factor) and factor >= 1.0 else 1.0


def _slowed_down(infer: Infer, factor: float) -> Infer:
    """TEST ONLY: `infer` at 1/`factor` of its speed: each call is followed by a sleep of
    (factor - 1) x the time it took."""

    def slow(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        outputs = infer(inputs)
        time.sleep((factor - 1.0) * (time.perf_counter() - started))
        return outputs

    return slow
