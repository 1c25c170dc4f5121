"""Dynamic batching: coalesces concurrent requests into batches for one inference worker.

Requests queue up, one queue per priority level; a batch starts when it holds `max_batch_size`
rows or when its oldest request has waited `max_queue_delay`, and it is filled from the
highest level (1) down. While the worker thread runs a batch, the event loop keeps accepting
and queueing, so under load the next batch is already full when the worker frees up.

Priority isolation: a running batch is never interrupted, so a level-1 request that arrives
while lower-priority work runs waits for that batch. `lower_priority_max_batch_size` caps the
rows of batches holding no level-1 request, which bounds that wait where a batch of n rows
costs n rows (a CPU): the flood runs in small batches, each as cheap per row as a large one.

A request may carry a queue timeout (Triton's `timeout`): if no batch has taken it by then it
is answered at once with QueueTimeout, and it never runs late. Knows nothing about HTTP, gRPC
or metrics libraries.

Inline runs: a request that finds the batcher idle (nothing queued, nothing running, no other
request arriving in the same loop turn) can run on the event loop thread itself, when the
policy allows it and the model's last lone run took under `inline_max_s`. Profiled at one
client, the hand-off to the worker thread and back (executor queue, thread wake-up,
`call_soon_threadsafe`) was 0.1-0.4 ms of a ~1.5 ms serving overhead. The loop is blocked for
at most about that budget, so probes and other connections still get answered promptly.
"""

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from kinfer_runtime.errors import (
    InferenceFailed,
    InvalidInput,
    ModelNotReady,
    Overloaded,
    QueueFull,
    QueueTimeout,
)
from kinfer_runtime.termination import one_line
from kinfer_runtime.tracing import RequestTrace, batch_spans

__all__ = ["BatchObserver", "BatchPolicy", "Batcher", "QueueWait", "RunBatch"]

log = logging.getLogger(__name__)

_MAX_REASON_CHARS = 400

Tensors = dict[str, np.ndarray]
RunBatch = Callable[[Mapping[str, np.ndarray]], Tensors]
QueueWait = tuple[int, float]
"""(priority level, seconds a request waited before its batch started)."""


class BatchObserver(Protocol):
    def batch_executed(self, rows: int, queue_waits: Sequence[QueueWait]) -> None: ...

    def queue_depth(self, depth: int) -> None: ...

    def request_rejected(self, reason: str, priority: int) -> None: ...


class _NoObserver:
    def batch_executed(self, rows: int, queue_waits: Sequence[QueueWait]) -> None:
        pass

    def queue_depth(self, depth: int) -> None:
        pass

    def request_rejected(self, reason: str, priority: int) -> None:
        pass


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 16
    max_queue_delay_s: float = 0.001
    # Requests allowed to wait at each priority level: a flood at one level cannot take the
    # room another level needs.
    max_queue_size: int = 256
    timeout_s: float = 30.0
    # Whether rows can be stacked on dimension 0. If not, each request runs alone, as sent.
    batchable: bool = True
    # Run every batch at exactly max_batch_size rows (zero-padded): for backends whose kernels
    # change with the batch size, this keeps each row's result bit-identical however requests
    # happened to be grouped.
    pad_to_max: bool = False
    # Triton's priority levels: 1 is the highest; a request without a priority (or with one
    # outside 1..priority_levels, as Triton does) gets default_priority.
    priority_levels: int = 1
    default_priority: int = 1
    # Longest lone run (seconds) that may execute on the event loop thread when the batcher
    # is idle; 0 turns inline runs off. Only used with no queue delay: a configured delay
    # means the operator wants requests to wait for company.
    inline_max_s: float = 0.0
    # Whether a batch holding higher-priority requests takes rows from lower levels to fill
    # up (Triton's dynamic batcher does). Where a batch costs about as much as one row (a
    # GPU) the filler is free; where it costs n times one row (a CPU) the filler only delays
    # the higher-priority requests, and the lower rows run just as cheaply in the next batch.
    mix_priority_levels: bool = True
    # Most rows in a batch that holds no level-1 request (None: max_batch_size). A running
    # batch is never interrupted, so this bounds how long a level-1 request can wait behind
    # lower-priority work: where a batch of n rows costs n rows (a CPU), one such batch is
    # what it waits for. A single lower-level request of more rows still runs whole.
    lower_priority_max_batch_size: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.default_priority <= self.priority_levels:
            raise ValueError(
                f"default priority {self.default_priority} is not in 1..{self.priority_levels}"
            )
        cap = self.lower_priority_max_batch_size
        if cap is not None and cap < 1:
            raise ValueError(f"lower-priority max batch size must be at least 1, not {cap}")

    def batch_rows(self, has_top_level: bool) -> int:
        """Most rows in one batch, depending on whether it holds a level-1 request."""
        cap = self.lower_priority_max_batch_size
        if has_top_level or cap is None:
            return self.max_batch_size
        return min(cap, self.max_batch_size)


@dataclass(eq=False, slots=True)
class _Job:
    inputs: Tensors
    rows: int
    future: asyncio.Future[Tensors]
    enqueued: float
    priority: int
    expires: float | None = None  # perf_counter() deadline to be taken into a batch
    timer: asyncio.TimerHandle | None = field(default=None)
    trace: RequestTrace | None = None  # None: tracing off, or the request is not sampled


class Batcher:
    def __init__(
        self, run: RunBatch, policy: BatchPolicy, observer: BatchObserver | None = None
    ) -> None:
        self._run = run
        self.policy = policy
        self._observer: BatchObserver = observer or _NoObserver()
        # Index 0 holds priority 1, the highest.
        self._queues: list[collections.deque[_Job]] = [
            collections.deque() for _ in range(policy.priority_levels)
        ]
        self._queued = 0
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        # One worker: a model instance executes one batch at a time, using all its threads.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kinfer-infer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._executing = False  # a batch is running, in the worker or inline
        self._arriving = 0  # requests inside submit() that have not been queued yet
        self._lone_run_s: float | None = None  # how long the last one-request batch took
        self.inline_runs = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="kinfer-batcher")

    @property
    def full(self) -> bool:
        """Whether no level has room: then no request can be queued, whatever its priority."""
        # Each level holds at most max_queue_size, so this total means every level is full.
        return self._queued >= self.policy.max_queue_size * self.policy.priority_levels

    @property
    def depth(self) -> int:
        return self._queued

    def level(self, priority: int) -> int:
        """The priority level a request is queued at (Triton's rule for 0 and out of range)."""
        if 1 <= priority <= self.policy.priority_levels:
            return priority
        return self.policy.default_priority

    def admit(self) -> None:
        """The cheap check before a request body is read: is there room at any level?"""
        if self.full:
            self._observer.request_rejected(QueueFull.reason, self.policy.default_priority)
            raise QueueFull(f"queue full ({self.policy.max_queue_size} requests waiting)")

    async def submit(
        self,
        inputs: Tensors,
        rows: int,
        *,
        priority: int = 0,
        queue_timeout_s: float = 0.0,
        trace: RequestTrace | None = None,
    ) -> Tensors:
        """Queues one request's rows and waits for its outputs (same row order).

        `queue_timeout_s` > 0 bounds the time before a batch takes the request; `trace`
        receives the queue wait, batch and inference spans.
        """
        if trace is not None:
            trace.queued()
        if self._closing or self._task is None:
            raise ModelNotReady("the model is not accepting requests")
        level = self.level(priority)
        parts = self._split(inputs, rows)
        if len(parts) == 1 and self._may_run_inline():
            self._arriving += 1
            try:
                # One loop turn lets requests read in the same turn reach this point too; any
                # of them, or a queued job, means this one should join a batch instead.
                await asyncio.sleep(0)
                alone = self._arriving == 1 and self._may_run_inline()
            finally:
                self._arriving -= 1
            if alone:
                if trace is not None:
                    with batch_spans([trace], rows) as batch, batch.stage("inference"):
                        return self._run_inline(inputs, rows, level)
                return self._run_inline(inputs, rows, level)
        jobs = self._enqueue(parts, level, queue_timeout_s, trace)
        # A plain timer rather than asyncio.timeout(): the same deadline for ~1/5 of the cost,
        # which shows on the hot path (profiled).
        deadline = asyncio.get_running_loop().call_later(
            self.policy.timeout_s, self._deadline_passed, jobs
        )
        try:
            results = [await job.future for job in jobs]
        finally:
            deadline.cancel()
            for job in jobs:
                future = job.future
                if future.done():
                    if not future.cancelled():
                        future.exception()  # retrieved: a sibling's error was the one raised
                else:
                    future.cancel()  # queued: skipped; running: its result is dropped
        if len(results) == 1:
            return results[0]
        return {name: np.concatenate([r[name] for r in results]) for name in results[0]}

    def _may_run_inline(self) -> bool:
        lone_run_s = self._lone_run_s
        return (
            lone_run_s is not None
            and self.policy.inline_max_s > 0
            and lone_run_s <= self.policy.inline_max_s
            and self.policy.max_queue_delay_s <= 0
            and not self._queued
            and not self._executing
            and not self._closing
        )

    def _run_inline(self, inputs: Tensors, rows: int, level: int) -> Tensors:
        """Runs one request on the loop thread: the batch it would have formed alone."""
        self._executing = True
        self.inline_runs += 1
        started = time.perf_counter()
        try:
            outputs = self._run_checked(self._assemble_one(inputs, rows), rows)
        except Exception as exc:
            raise self._failure(rows, exc) from None
        finally:
            self._executing = False
            self._lone_run_s = time.perf_counter() - started
        self._observer.batch_executed(rows, [(level, 0.0)])
        if self.policy.pad_to_max:
            return {name: array[:rows] for name, array in outputs.items()}
        return outputs

    def _deadline_passed(self, jobs: list[_Job]) -> None:
        """The request's deadline (`timeout_s`, queueing and execution) passed: Overloaded."""
        pending = [job for job in jobs if not job.future.done()]
        if not pending:
            return
        self._observer.request_rejected(Overloaded.reason, jobs[0].priority)
        error = f"request did not complete within {self.policy.timeout_s:g}s"
        for job in pending:
            job.future.set_exception(Overloaded(error))

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

    def _enqueue(
        self,
        parts: list[tuple[Tensors, int]],
        level: int,
        queue_timeout_s: float,
        trace: RequestTrace | None = None,
    ) -> list[_Job]:
        limit = self.policy.max_queue_size
        if len(parts) > limit:
            # Retrying cannot help this one: it is larger than the whole queue.
            raise InvalidInput(
                f"request needs {len(parts)} batches of {self.policy.max_batch_size} rows; "
                f"at most {limit} can be queued"
            )
        queue = self._queues[level - 1]
        if len(queue) + len(parts) > limit:
            self._observer.request_rejected(QueueFull.reason, level)
            raise QueueFull(f"queue full ({limit} requests waiting at priority {level})")
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        expires = now + queue_timeout_s if queue_timeout_s > 0 else None
        jobs = []
        for inputs, rows in parts:
            job = _Job(inputs, rows, loop.create_future(), now, level, expires, trace=trace)
            if expires is not None:
                job.timer = loop.call_later(queue_timeout_s, self._expire, job)
            jobs.append(job)
        queue.extend(jobs)
        self._queued += len(jobs)
        self._queued_rows += sum(job.rows for job in jobs)
        self._observer.queue_depth(self._queued)
        self._wakeup.set()
        return jobs

    def _expire(self, job: _Job) -> None:
        """The job's queue timeout passed while it was still queued: answer it now."""
        queue = self._queues[job.priority - 1]
        try:
            queue.remove(job)
        except ValueError:
            return  # already taken into a batch
        self._queued -= 1
        self._queued_rows -= job.rows
        self._observer.queue_depth(self._queued)
        self._reject_expired(job)

    def _reject_expired(self, job: _Job) -> None:
        if job.future.done():  # the caller gave up already
            return
        self._observer.request_rejected(QueueTimeout.reason, job.priority)
        job.future.set_exception(
            QueueTimeout("queue timeout passed before the request was scheduled")
        )

    async def stop(self) -> None:
        """Lets every queued request finish, then stops the worker."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        while True:
            if not self._queued:
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
        while self._queued and self._queued_rows < self.policy.batch_rows(bool(self._queues[0])):
            if self._closing:
                return
            oldest = min(queue[0].enqueued for queue in self._queues if queue)
            remaining = oldest + self.policy.max_queue_delay_s - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _take(self) -> list[_Job]:
        """The next batch: jobs in priority order, then arrival order, while they fit.

        A batch without a level-1 request holds at most `lower_priority_max_batch_size` rows.
        """
        jobs: list[_Job] = []
        rows = 0
        limit = self.policy.max_batch_size
        now = time.perf_counter()
        for queue in self._queues:
            while queue:
                job = queue[0]
                if jobs and (not self.policy.batchable or rows + job.rows > limit):
                    break
                queue.popleft()
                self._queued -= 1
                self._queued_rows -= job.rows
                if job.timer is not None:
                    job.timer.cancel()
                if job.future.done():  # its caller gave up while it was queued
                    continue
                if job.expires is not None and job.expires <= now:  # its timer is late
                    self._reject_expired(job)
                    continue
                if not jobs:  # the first job decides: lower-level batches stay small
                    limit = self.policy.batch_rows(job.priority == 1)
                jobs.append(job)
                rows += job.rows
            else:
                if jobs and not self.policy.mix_priority_levels:
                    break  # this level's work runs without filler from lower ones
                continue
            break  # the batch is full: lower levels wait for the next one
        self._observer.queue_depth(self._queued)
        return jobs

    def _assemble_one(self, inputs: Tensors, rows: int) -> Tensors:
        return self._assemble_parts([inputs], rows)

    def _assemble(self, jobs: list[_Job], rows: int) -> Tensors:
        return self._assemble_parts([job.inputs for job in jobs], rows)

    def _assemble_parts(self, inputs: list[Tensors], rows: int) -> Tensors:
        if len(inputs) == 1 and not self.policy.pad_to_max:
            return inputs[0]
        batch: Tensors = {}
        padding = self.policy.max_batch_size - rows if self.policy.pad_to_max else 0
        for name, first in inputs[0].items():
            parts = [one[name] for one in inputs]
            if padding > 0:
                parts.append(np.zeros((padding, *first.shape[1:]), dtype=first.dtype))
                if first.dtype.kind == "O":
                    parts[-1].fill(b"")
            batch[name] = np.concatenate(parts)
        return batch

    def _run_checked(self, batch: Tensors, rows: int) -> Tensors:
        outputs = self._run(batch)
        if self.policy.batchable:
            self._check_rows(outputs, next(iter(batch.values())).shape[0])
        return outputs

    @staticmethod
    def _failure(rows: int, exc: Exception) -> InferenceFailed:
        log.warning("batch of %d rows failed: %s", rows, exc)
        # Frameworks put whole interpreter tracebacks in messages; clients get a short line.
        reason = one_line(str(exc))[:_MAX_REASON_CHARS]
        return InferenceFailed(f"model execution failed: {reason}")

    async def _execute(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        rows = sum(job.rows for job in jobs)
        loop = asyncio.get_running_loop()
        self._executing = True
        traces = [job.trace for job in jobs if job.trace is not None]
        try:
            if traces:
                with batch_spans(traces, rows) as traced:
                    batch = self._assemble(jobs, rows)
                    with traced.stage("inference"):
                        outputs = await loop.run_in_executor(
                            self._executor, self._run_checked, batch, rows
                        )
            else:
                batch = self._assemble(jobs, rows)
                outputs = await loop.run_in_executor(self._executor, self._run_checked, batch, rows)
        except Exception as exc:
            failure = self._failure(rows, exc)
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(InferenceFailed(str(failure)))
            return
        finally:
            self._executing = False
        if len(jobs) == 1:
            self._lone_run_s = time.perf_counter() - started
        self._observer.batch_executed(
            rows, [(job.priority, started - job.enqueued) for job in jobs]
        )
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
