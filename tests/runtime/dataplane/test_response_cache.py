"""The response cache's key and bounds: exact inputs, model identity, LRU by bytes."""

import numpy as np
import pytest
from kinfer_runtime.dataplane.response_cache import ResponseCache, request_key


class Counts:
    def __init__(self) -> None:
        self.hits = self.misses = self.evictions = 0
        self.bytes = 0

    def cache_hit(self) -> None:
        self.hits += 1

    def cache_miss(self) -> None:
        self.misses += 1

    def cache_evicted(self, count: int) -> None:
        self.evictions += count

    def cache_bytes(self, size: int) -> None:
        self.bytes = size


X = np.arange(6, dtype=np.float32).reshape(2, 3)


def test_key_is_the_same_for_the_same_tensors_whatever_their_order_or_layout() -> None:
    a = request_key(b"m", {"x": X, "y": X + 1})
    assert a == request_key(b"m", {"y": X + 1, "x": np.asfortranarray(X)})
    assert a == request_key(b"m", {"x": X.astype(">f4"), "y": X + 1})  # same values, LE bytes


@pytest.mark.parametrize(
    "other",
    [
        {"x": X.reshape(3, 2), "y": X + 1},  # shape
        {"x": X.astype(np.float64), "y": X + 1},  # datatype
        {"x": np.where(X == 5, np.nextafter(np.float32(5), 6), X), "y": X + 1},  # one ulp
        {"z": X, "y": X + 1},  # name
        {"x": X},  # an input fewer
    ],
)
def test_any_change_of_input_changes_the_key(other: dict[str, np.ndarray]) -> None:
    assert request_key(b"m", {"x": X, "y": X + 1}) != request_key(b"m", other)


def test_the_model_identity_and_bytes_elements_are_part_of_the_key() -> None:
    assert request_key(b"m\0r1", {"x": X}) != request_key(b"m\0r2", {"x": X})
    one = np.array([b"ab", b"c"], dtype=object)
    two = np.array([b"a", b"bc"], dtype=object)  # same concatenation, other elements
    assert request_key(b"m", {"s": one}) != request_key(b"m", {"s": two})


def test_lru_eviction_by_bytes_and_read_only_entries() -> None:
    counts = Counts()
    row = np.zeros((1, 100), dtype=np.float32)  # 400 bytes + overhead per entry
    cache = ResponseCache("m", 1100, counts)
    keys = [cache.key({"x": np.full((1,), i, dtype=np.float32)}) for i in range(3)]
    cache.put(keys[0], {"y": row})
    cache.put(keys[1], {"y": row})
    assert cache.get(keys[0]) is not None  # 0 is now the most recent
    cache.put(keys[2], {"y": row})  # over the bound: 1, the least recent, goes
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0]) is not None and cache.get(keys[2]) is not None
    assert (counts.hits, counts.misses, counts.evictions) == (3, 1, 1)
    assert counts.bytes == cache.size <= cache.max_bytes and len(cache) == 2
    entry = cache.get(keys[0])
    assert entry is not None and not entry["y"].flags.writeable
    cache.put(cache.key({"x": X}), {"y": np.zeros(10_000, dtype=np.float32)})  # too big alone
    assert len(cache) == 2
