"""Open Inference Protocol datatype names and their numpy equivalents.

The protocol's names (FP32, INT64, BYTES, ...) are the vocabulary every layer shares, so that an
error message says "FP64" to a client that sent FP64 rather than numpy's "float64".
"""

from typing import Final

import numpy as np

__all__ = [
    "BYTES",
    "datatype_of",
    "numpy_dtype",
    "supported_datatypes",
]

BYTES: Final = "BYTES"

# Little-endian on purpose: the binary tensor extension defines the wire format as little-endian.
_NUMPY_BY_DATATYPE: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    BYTES: np.dtype(object),
}
_DATATYPE_BY_KIND_SIZE: Final[dict[tuple[str, int], str]] = {
    (dtype.kind, dtype.itemsize): name
    for name, dtype in _NUMPY_BY_DATATYPE.items()
    if name != BYTES
}


def supported_datatypes() -> list[str]:
    """All datatypes this runtime can carry on the wire (BF16 has no numpy type, so it is not)."""
    return list(_NUMPY_BY_DATATYPE)


def numpy_dtype(datatype: str) -> np.dtype[np.generic] | None:
    """The numpy dtype for a protocol datatype, or None when the name is unknown or unsupported."""
    return _NUMPY_BY_DATATYPE.get(datatype)


def datatype_of(dtype: np.dtype[np.generic]) -> str:
    """The protocol datatype of a numpy dtype (object and string arrays are BYTES)."""
    if dtype.kind in "OSU":
        return BYTES
    name = _DATATYPE_BY_KIND_SIZE.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return name
