"""Admission by bytes in flight: the memory that request bodies may hold at once.

A queue bounded by count does not bound memory: eight 60 MiB bodies cost more than a 1 GiB pod
holds. Every protocol charges what a request will hold (before reading it where the size is
declared) to one `ByteBudget`; a request that would overdraw it is refused at once, never
queued, so accepted requests are not slowed down. Refusals: `PayloadTooLarge` when the request
alone is over the whole budget (it can never fit), `MemoryBudgetFull` (retry later) otherwise.

The default budget is a share of the container's memory limit (cgroup v2 `memory.max`, v1
`memory.limit_in_bytes`), or a fixed size when the process has no limit.
"""

from pathlib import Path
from typing import Final

from kinfer_runtime.errors import MemoryBudgetFull, PayloadTooLarge

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "BudgetCharge",
    "ByteBudget",
    "container_memory_limit",
    "default_budget",
]

DEFAULT_BUDGET_BYTES: Final = 256 * 1024 * 1024
"""Without a readable container memory limit."""
LIMIT_SHARE: Final = 0.25
"""Of the container's memory limit: the rest is the model, the interpreter, decoding
scratch space (one JSON body at a time, on the event loop), batches and responses."""
_CGROUP_FILES: Final = (
    Path("/sys/fs/cgroup/memory.max"),  # v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # v1
)
_UNLIMITED: Final = 1 << 60  # v1 reports "no limit" as a huge page-aligned number


def container_memory_limit(files: tuple[Path, ...] = _CGROUP_FILES) -> int | None:
    """The cgroup memory limit in bytes; None when there is none or it cannot be read."""
    for path in files:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            continue
        return value if 0 < value < _UNLIMITED else None
    return None


def default_budget(memory_limit: int | None) -> int:
    """The in-flight byte budget for a container with `memory_limit` bytes (None: unknown)."""
    if memory_limit is None:
        return DEFAULT_BUDGET_BYTES
    return max(int(memory_limit * LIMIT_SHARE), 1)


class ByteBudget:
    """A counter of bytes held by requests in flight, refusing charges that would overdraw it.

    Not thread-safe on purpose: the REST and gRPC servers share one event loop, and every
    charge and release runs on it.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"byte budget must be > 0, got {capacity}")
        self.capacity = capacity
        self.in_use = 0

    def charge(self, size: int = 0) -> "BudgetCharge":
        """A charge of `size` bytes, to grow as more arrives and release when done."""
        charge = BudgetCharge(self)
        charge.cover(size)
        return charge

    def _take(self, held: int, more: int) -> None:
        total = held + more
        if total > self.capacity:
            raise PayloadTooLarge(
                f"request needs {total} bytes of memory, above the runtime's in-flight budget of "
                f"{self.capacity} bytes"
            )
        if self.in_use + more > self.capacity:
            raise MemoryBudgetFull(
                f"overloaded: {self.in_use} of {self.capacity} bytes of request memory in use, "
                "retry later"
            )
        self.in_use += more


class BudgetCharge:
    """What one request holds of a `ByteBudget`; a context manager that releases it."""

    __slots__ = ("_budget", "held")

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.held = 0

    def cover(self, size: int) -> None:
        """Hold at least `size` bytes in all (never less than already held)."""
        if size > self.held:
            self._budget._take(self.held, size - self.held)
            self.held = size

    def release(self) -> None:
        self._budget.in_use -= self.held
        self.held = 0

    def __enter__(self) -> "BudgetCharge":
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
