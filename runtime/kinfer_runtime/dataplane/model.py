"""A served model as the data plane sees it: identity, phase, signature, response cache,
batcher and handler."""

from typing import Any, NamedTuple

from kinfer_runtime.backends.base import Backend, ModelSignature
from kinfer_runtime.dataplane.batcher import Batcher, Tensors
from kinfer_runtime.dataplane.handling import HandlerRunner
from kinfer_runtime.dataplane.readiness import Phase, Readiness
from kinfer_runtime.dataplane.response_cache import ResponseCache
from kinfer_runtime.dataplane.validation import check_inputs
from kinfer_runtime.errors import ModelNotReady
from kinfer_runtime.handlers import HandlerRequest
from kinfer_runtime.tracing import RequestTrace, stage

__all__ = ["Inferred", "ServedModel"]


class Inferred(NamedTuple):
    """A request's outputs, and whether the response cache answered it."""

    outputs: Tensors
    cached: bool


class ServedModel:
    def __init__(self, name: str, version: str, readiness: Readiness) -> None:
        self.name = name
        self.version = version
        self.readiness = readiness
        self._backend: Backend | None = None
        self._batcher: Batcher | None = None
        # Set by the service for models marked deterministic (KINFER_RESPONSE_CACHE_BYTES).
        self.response_cache: ResponseCache | None = None
        self.handler: HandlerRunner | None = None

    def attach(
        self, backend: Backend, batcher: Batcher, handler: HandlerRunner | None = None
    ) -> None:
        """Makes a loaded, warmed-up backend available; the batcher must already be started."""
        self._backend = backend
        self._batcher = batcher
        self.handler = handler

    @property
    def loaded(self) -> bool:
        return self._backend is not None

    @property
    def ready(self) -> bool:
        return self.loaded and self.readiness.ready

    def require_ready(self) -> None:
        if not self.ready:
            raise ModelNotReady(f"model {self.name!r} is not ready ({self.readiness.phase.value})")

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise ModelNotReady(f"model {self.name!r} is not loaded yet")
        return self._backend

    @property
    def signature(self) -> ModelSignature:
        return self.backend.signature

    @property
    def output_names(self) -> tuple[str, ...]:
        """What a request may ask for: the handler's outputs when there is one."""
        if self.handler is not None:
            return self.handler.output_names
        return tuple(spec.name for spec in self.signature.outputs)

    @property
    def batcher(self) -> Batcher | None:
        return self._batcher

    def admit(self) -> None:
        """Cheap checks before a request body is even read: serving, and room in the queue
        (with a response cache, the queue is checked on a miss only: a hit needs no room)."""
        self._require_serving()
        assert self._batcher is not None
        if self.response_cache is None:
            self._batcher.admit()

    def _require_serving(self) -> None:
        if self._batcher is None or not self.readiness.serving:
            phase = self.readiness.phase
            state = "loading" if phase is Phase.LOADING else phase.value
            raise ModelNotReady(f"model {self.name!r} is not serving ({state})")

    async def infer(self, inputs: Tensors, *, priority: int = 0, timeout_us: int = 0) -> Tensors:
        """Validates one request, queues it for batching, returns all of the model's outputs.

        `priority` and `timeout_us` follow Triton: level 1 is the highest and 0 the model's
        default; a timeout (0: none) bounds the request's wait in the queue.
        """
        return (await self.infer_request(inputs, priority=priority, timeout_us=timeout_us))[0]

    async def infer_request(
        self,
        inputs: Tensors,
        *,
        priority: int = 0,
        timeout_us: int = 0,
        trace: RequestTrace | None = None,
    ) -> Inferred:
        """`infer`, through the handler when the model has one, with the request's spans when
        `trace` is given. The response cache sits at the model call: a hit never reaches the
        batcher (with a handler, the key is the tensors its preprocess made)."""
        if self.handler is not None:
            result = await self.handle(
                HandlerRequest(inputs), priority=priority, timeout_us=timeout_us, trace=trace
            )
            return Inferred(self.handler.as_tensors(result), False)
        return await self._infer_model(inputs, priority, timeout_us, trace)

    async def handle(
        self,
        request: HandlerRequest,
        *,
        priority: int = 0,
        timeout_us: int = 0,
        trace: RequestTrace | None = None,
    ) -> Any:
        """Runs the handler around the batched model call: its tensors or its JSON."""
        self.admit()
        assert self.handler is not None

        async def model_call(tensors: Tensors) -> Tensors:
            return (await self._infer_model(tensors, priority, timeout_us, trace)).outputs

        return await self.handler.run(request, model_call)

    async def _infer_model(
        self, inputs: Tensors, priority: int, timeout_us: int, trace: RequestTrace | None
    ) -> Inferred:
        cache = self.response_cache
        with stage(trace, "preprocess"):
            if cache is None:
                self.admit()
            else:
                self._require_serving()  # a hit needs no room in the queue
            assert self._batcher is not None and self._backend is not None
            rows = check_inputs(self._backend.signature, inputs)
            key = None
            if cache is not None:
                key = cache.key(inputs)
                hit = cache.get(key)
                if hit is not None:
                    return Inferred(hit, True)
                self._batcher.admit()
            prepared = self._backend.prepare(inputs)
        outputs = await self._batcher.submit(
            prepared, rows, priority=priority, queue_timeout_s=timeout_us / 1e6, trace=trace
        )
        if cache is not None and key is not None:
            cache.put(key, outputs)
        return Inferred(outputs, False)
