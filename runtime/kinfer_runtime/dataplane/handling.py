"""Runs a bundle's handler around the batched model call, off the event loop.

preprocess and postprocess run per request in their own thread pool (`threads`, the
KINFER_HANDLER_THREADS setting), so decoding one image never blocks the event loop and never
holds up the batcher: the model call in between still goes through the dynamic batcher and is
stacked with the rows of concurrent requests.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson

from kinfer_runtime.errors import HandlerFailed, InvalidInput, KinferError
from kinfer_runtime.handlers import JSON_OUTPUT, Handler, HandlerRequest, Tensors

__all__ = ["HandlerRunner"]

log = logging.getLogger(__name__)


def _failed(stage: str, exc: Exception) -> HandlerFailed:
    log.error("handler %s failed", stage, exc_info=exc)
    return HandlerFailed(f"handler {stage} raised {type(exc).__name__}")


class HandlerRunner:
    def __init__(self, handler: Handler, threads: int) -> None:
        self.handler = handler
        declared: tuple[str, ...] = getattr(handler, "outputs", ())
        self.tensor_outputs = declared
        self.output_names: tuple[str, ...] = declared or (JSON_OUTPUT,)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kinfer-handler")

    async def _run(self, stage: str, call: Callable[[], Any]) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except KinferError:
            raise  # HandlerInputError (400), or a domain error the handler chose to raise
        except Exception as exc:
            raise _failed(stage, exc) from exc

    async def run(
        self, request: HandlerRequest, infer: Callable[[Tensors], Awaitable[Tensors]]
    ) -> Any:
        """The handler's result: a dict of tensors (when it declares `outputs`) or JSON."""
        tensors = await self._run("preprocess", lambda: self.handler.preprocess(request))
        if not isinstance(tensors, Mapping) or not all(
            isinstance(v, np.ndarray) for v in tensors.values()
        ):
            raise HandlerFailed("handler preprocess must return a dict of numpy arrays")
        try:
            outputs = await infer(dict(tensors))
        except InvalidInput as exc:  # the model refused what preprocess made: a handler bug
            raise HandlerFailed(f"the model refused preprocess's tensors: {exc}") from exc
        result = await self._run("postprocess", lambda: self.handler.postprocess(outputs, request))
        if self.tensor_outputs:
            if not isinstance(result, Mapping) or set(result) != set(self.tensor_outputs):
                raise HandlerFailed(
                    f"handler postprocess must return the tensors {list(self.tensor_outputs)}"
                )
            return {name: np.asarray(result[name]) for name in self.tensor_outputs}
        return result

    @staticmethod
    def as_tensors(result: Any) -> Tensors:
        """A result for the OIP paths: tensors as they are, JSON as one BYTES tensor."""
        if isinstance(result, dict) and all(isinstance(v, np.ndarray) for v in result.values()):
            return result
        try:
            text = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as exc:
            raise HandlerFailed(f"handler postprocess returned non-JSON: {exc}") from exc
        return {JSON_OUTPUT: np.array([text], dtype=object)}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
