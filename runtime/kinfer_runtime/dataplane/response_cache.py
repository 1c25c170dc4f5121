"""The response cache: a deterministic model's outputs for inputs it has already answered.

Only for models whose operator marked them deterministic (`spec.model.deterministic`); the
runtime trusts that flag and caches when `KINFER_RESPONSE_CACHE_BYTES` > 0.

The key is a BLAKE2b-256 digest of, in order:
- the model's name, version and revision (`KINFER_REVISION`: a new revision never sees the
  old one's answers);
- each input tensor, sorted by name: its name, datatype, shape, and its exact bytes as the
  model receives them (little-endian values; BYTES elements each length-prefixed).

So the same tensor sent as JSON, with the binary extension or over gRPC is one entry (JSON's
`1` and `1.0` in an FP32 tensor are the same bytes), while any change of datatype, shape or
one bit of data is another. What the cache stores is the model's full set of outputs, before
output selection and encoding: the request id, `outputs` (which outputs, binary or JSON),
`binary_data_output`, and the scheduling parameters `priority` and `timeout` are applied to
the cached outputs per request, so none of them is part of the key (none changes what the
model computes). Two identical requests that miss at the same time both run.

Bounded by bytes (the outputs' data; an entry larger than the bound is not stored) with
least-recently-used eviction. A hit never reaches the batcher.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final, Protocol

import numpy as np

from kinfer_runtime.datatypes import BYTES, datatype_of

__all__ = ["CacheObserver", "ResponseCache", "request_key"]

_LENGTH: Final = struct.Struct("<Q")
_ELEMENT: Final = struct.Struct("<I")

Tensors = Mapping[str, np.ndarray]


class CacheObserver(Protocol):
    def cache_hit(self) -> None: ...

    def cache_miss(self) -> None: ...

    def cache_evicted(self, count: int) -> None: ...

    def cache_bytes(self, size: int) -> None: ...


def _field(digest: Any, data: bytes | memoryview) -> None:
    # Length-prefixed, so that no two different sequences of fields hash the same bytes.
    digest.update(_LENGTH.pack(len(data)))
    digest.update(data)


def _element_bytes(value: object) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)  # type: ignore[call-overload]


def request_key(identity: bytes, inputs: Tensors) -> bytes:
    """The cache key of `inputs` for the model identified by `identity` (see the module doc)."""
    digest = hashlib.blake2b(digest_size=32)
    _field(digest, identity)
    for name in sorted(inputs):
        array = inputs[name]
        datatype = datatype_of(array.dtype) if array.dtype != object else BYTES
        _field(digest, name.encode())
        _field(digest, datatype.encode())
        _field(digest, ",".join(map(str, array.shape)).encode())
        if array.dtype == object:
            parts = []
            for value in array.reshape(-1):
                data = _element_bytes(value)
                parts += [_ELEMENT.pack(len(data)), data]
            _field(digest, b"".join(parts))
        else:
            contiguous = np.ascontiguousarray(array)
            if contiguous.dtype.byteorder == ">":
                contiguous = contiguous.astype(contiguous.dtype.newbyteorder("<"))
            _field(digest, memoryview(contiguous.data).cast("B"))
    return digest.digest()


def _size(outputs: Tensors) -> int:
    total = 0
    for array in outputs.values():
        if array.dtype == object:
            total += sum(len(_element_bytes(v)) + 8 for v in array.reshape(-1))
        else:
            total += array.nbytes
    return total + 64 * len(outputs)


def _frozen(outputs: Tensors) -> dict[str, np.ndarray]:
    """A private, read-only copy: later batches or encoders can never change a cached answer."""
    frozen = {}
    for name, array in outputs.items():
        copy = np.array(array, copy=True)
        copy.flags.writeable = False
        frozen[name] = copy
    return frozen


class ResponseCache:
    """An LRU map from request keys to a model's outputs, bounded by `max_bytes`."""

    def __init__(self, identity: str, max_bytes: int, observer: CacheObserver) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be > 0")
        self._identity = identity.encode()
        self.max_bytes = max_bytes
        self._observer = observer
        self._entries: OrderedDict[bytes, tuple[dict[str, np.ndarray], int]] = OrderedDict()
        self.size = 0

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, inputs: Tensors) -> bytes:
        return request_key(self._identity, inputs)

    def get(self, key: bytes) -> dict[str, np.ndarray] | None:
        entry = self._entries.get(key)
        if entry is None:
            self._observer.cache_miss()
            return None
        self._entries.move_to_end(key)
        self._observer.cache_hit()
        return entry[0]

    def put(self, key: bytes, outputs: Tensors) -> None:
        size = _size(outputs)
        if size > self.max_bytes or key in self._entries:
            return
        evicted = 0
        while self.size + size > self.max_bytes:
            _, (_, old) = self._entries.popitem(last=False)
            self.size -= old
            evicted += 1
        self._entries[key] = (_frozen(outputs), size)
        self.size += size
        if evicted:
            self._observer.cache_evicted(evicted)
        self._observer.cache_bytes(self.size)
