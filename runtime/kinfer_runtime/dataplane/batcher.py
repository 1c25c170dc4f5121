"""Dynamic batching: coalesces concurrent requests into batches for one inference worker.

Requests queue up; a batch starts when it holds `max_batch_size` rows or when its oldest
request has waited `max_queue_delay`. While the worker thread runs a batch, the event loop
keeps accepting and queueing, so under load the next batch is already full when the worker
frees up. Knows nothing about HTTP or metrics libraries.
"""

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from kinfer_runtime.errors import InferenceFailed, InvalidInput, ModelNotReady, Overloaded
from kinfer_runtime.termination import one_line

__all__ = ["BatchObserver", "BatchPolicy", "Batcher", "RunBatch"]

log = logging.getLogger(__name__)

_MAX_REASON_CHARS = 400

Tensors = dict[str, np.ndarray]
RunBatch = Callable[[Mapping[str, np.ndarray]], Tensors]


class BatchObserver(Protocol):
    def batch_executed(self, rows: int, queue_waits: Sequence[float]) -> None: ...

    def queue_depth(self, depth: int) -> None: ...


class _NoObserver:
    def batch_executed(self, rows: int, queue_waits: Sequence[float]) -> None:
        pass

    def queue_depth(self, depth: int) -> None:
        pass


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 16
    max_queue_delay_s: float = 0.001
    max_queue_size: int = 256
    timeout_s: float = 30.0
    # Whether rows can be stacked on dimension 0. If not, each request runs alone, as sent.
    batchable: bool = True
    # Run every batch at exactly max_batch_size rows (zero-padded): for backends whose kernels
    # change with the batch size, this keeps each row's result bit-identical however requests
    # happened to be grouped.
    pad_to_max: bool = False


@dataclass(eq=False, slots=True)
class _Job:
    inputs: Tensors
    rows: int
    future: asyncio.Future[Tensors]
    enqueued: float


class Batcher:
    def __init__(
        self, run: RunBatch, policy: BatchPolicy, observer: BatchObserver | None = None
    ) -> None:
        self._run = run
        self.policy = policy
        self._observer: BatchObserver = observer or _NoObserver()
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        # One worker: a model instance executes one batch at a time, using all its threads.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kinfer-infer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="kinfer-batcher")

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.policy.max_queue_size

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def submit(self, inputs: Tensors, rows: int) -> Tensors:
        """Queues one request's rows and waits for its outputs (same row order)."""
        if self._closing or self._task is None:
            raise ModelNotReady("the model is not accepting requests")
        jobs = self._enqueue(self._split(inputs, rows))
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                results = [await job.future for job in jobs]
        except TimeoutError:
            raise Overloaded(
                f"request did not complete within {self.policy.timeout_s:g}s"
            ) from None
        finally:
            for job in jobs:
                job.future.cancel()  # no-op when done; queued: skipped; running: result dropped
        if len(results) == 1:
            return results[0]
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}

    def _split(self, inputs: Tensors, rows: int) -> list[tuple[Tensors, int]]:
        limit = self.policy.max_batch_size
        if not self.policy.batchable or rows <= limit:
            return [(inputs, rows)]
        # Larger than a batch: run it as consecutive max-size chunks, in order.
        chunks = []
        for start in range(0, rows, limit):
            chunk = {name: array[start : start + limit] for name, array in inputs.items()}
            chunks.append((chunk, min(limit, rows - start)))
        return chunks

    def _enqueue(self, parts: list[tuple[Tensors, int]]) -> list[_Job]:
        if len(parts) > self.policy.max_queue_size:
            # Retrying cannot help this one: it is larger than the whole queue.
            raise InvalidInput(
                f"request needs {len(parts)} batches of {self.policy.max_batch_size} rows; "
                f"at most {self.policy.max_queue_size} can be queued"
            )
        if len(self._queue) + len(parts) > self.policy.max_queue_size:
            raise Overloaded(f"queue full ({self.policy.max_queue_size} requests waiting)")
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        jobs = [_Job(inputs, rows, loop.create_future(), now) for inputs, rows in parts]
        self._queue.extend(jobs)
        self._queued_rows += sum(job.rows for job in jobs)
        self._observer.queue_depth(len(self._queue))
        self._wakeup.set()
        return jobs

    async def stop(self) -> None:
        """Lets every queued request finish, then stops the worker."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_fuller_batch()
            jobs = self._take()
            if jobs:
                await self._execute(jobs)

    async def _wait_for_fuller_batch(self) -> None:
        if not self.policy.batchable:
            return
        deadline = self._queue[0].enqueued + self.policy.max_queue_delay_s
        while self._queued_rows < self.policy.max_batch_size and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _take(self) -> list[_Job]:
        jobs: list[_Job] = []
        rows = 0
        while self._queue:
            job = self._queue[0]
            if jobs and (not self.policy.batchable or rows + job.rows > self.policy.max_batch_size):
                break
            self._queue.popleft()
            self._queued_rows -= job.rows
            if job.future.done():  # timed out while queued
                continue
            jobs.append(job)
            rows += job.rows
        self._observer.queue_depth(len(self._queue))
        return jobs

    def _assemble(self, jobs: list[_Job], rows: int) -> Tensors:
        if len(jobs) == 1 and not self.policy.pad_to_max:
            return jobs[0].inputs
        batch: Tensors = {}
        padding = self.policy.max_batch_size - rows if self.policy.pad_to_max else 0
        for name, first in jobs[0].inputs.items():
            parts = [job.inputs[name] for job in jobs]
            if padding > 0:
                parts.append(np.zeros((padding, *first.shape[1:]), dtype=first.dtype))
                if first.dtype.kind == "O":
                    parts[-1].fill(b"")
            batch[name] = np.concatenate(parts)
        return batch

    async def _execute(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        rows = sum(job.rows for job in jobs)
        loop = asyncio.get_running_loop()
        try:
            batch = self._assemble(jobs, rows)
            outputs = await loop.run_in_executor(self._executor, self._run, batch)
            if self.policy.batchable:
                self._check_rows(outputs, next(iter(batch.values())).shape[0])
        except Exception as exc:
            log.warning("batch of %d rows failed: %s", rows, exc)
            # Frameworks put whole interpreter tracebacks in messages; clients get a short line.
            reason = one_line(str(exc))[:_MAX_REASON_CHARS]
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(InferenceFailed(f"model execution failed: {reason}"))
            return
        self._observer.batch_executed(rows, [started - job.enqueued for job in jobs])
        offset = 0
        for job in jobs:
            if not job.future.done():
                job.future.set_result(
                    outputs
                    if len(jobs) == 1 and not self.policy.pad_to_max
                    else {
                        name: array[offset : offset + job.rows] for name, array in outputs.items()
                    }
                )
            offset += job.rows

    @staticmethod
    def _check_rows(outputs: Tensors, rows: int) -> None:
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != rows:
                raise RuntimeError(f"output {name!r} has shape {array.shape}, not {rows} rows")
