"""The handler API: Python code in a bundle (or a derived image) that turns what a client sends
into the model's tensors and the model's tensors into what the client wants back.

A handler is a class named by the bundle manifest's `handler` (`file.py:Class` in the bundle,
or `package.module:Class` importable from the image). The runtime builds it once with a
`HandlerContext`, then calls, per request and in a thread pool off the event loop:

- `preprocess(request: HandlerRequest) -> dict[str, np.ndarray]`: the model's inputs for this
  request, with the batch dimension first (one row per item); the dynamic batcher stacks the
  rows of concurrent requests into one model call;
- `postprocess(outputs: dict[str, np.ndarray], request) -> result`: `outputs` are this
  request's rows of every model output. The result is either a dict of numpy arrays whose keys
  are exactly the class attribute `outputs` (returned as OIP v2 tensors; strings and bytes as
  BYTES), or, when the class declares no `outputs`, any JSON-serialisable value: returned as
  is by `POST .../predict`, and as one BYTES tensor `json` holding its JSON text by `.../infer`.

Errors: raise `HandlerInputError` for a wrong request (400 with its message); anything else is a
500 naming the exception class.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from kinfer_runtime.backends.base import ModelSignature
from kinfer_runtime.errors import HandlerInputError

__all__ = [
    "JSON_OUTPUT",
    "Handler",
    "HandlerContext",
    "HandlerInputError",
    "HandlerRequest",
    "Tensors",
]

Tensors = dict[str, np.ndarray]
JSON_OUTPUT = "json"
"""The one BYTES output of a JSON-returning handler over the OIP paths."""


@dataclass(frozen=True)
class HandlerContext:
    """What a handler is built with, once, at load."""

    root: Path | None
    """The bundle directory (None for a handler from the image used with a bare model file)."""
    signature: ModelSignature
    labels: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    """The manifest's `handlerOptions`."""


@dataclass(frozen=True)
class HandlerRequest:
    """One request as the client sent it."""

    inputs: Mapping[str, np.ndarray]
    """OIP v2 inputs by name (REST JSON, binary extension or gRPC alike); a BYTES tensor is a
    numpy object array of `bytes`. Empty for a `POST .../predict`."""
    body: bytes | None = None
    """The raw body of a `POST .../predict` (an image), else None."""
    content_type: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    """Scratch space from preprocess to postprocess of this one request (original image sizes,
    say): the handler instance is shared by every request and thread."""

    def blobs(self, name: str) -> list[bytes]:
        """The byte strings a request carries: the body of a predict POST, or the items of
        the BYTES input `name`; HandlerInputError when there are none."""
        if self.body is not None:
            return [self.body]
        array = self.inputs.get(name)
        if array is None:
            raise HandlerInputError(f"input {name!r} is required (a BYTES tensor)")
        if array.dtype != object or array.size == 0:
            raise HandlerInputError(f"input {name!r} must be a non-empty BYTES tensor")
        return [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)]


class Handler(Protocol):
    outputs: ClassVar[tuple[str, ...]]

    def preprocess(self, request: HandlerRequest) -> Tensors: ...

    def postprocess(self, outputs: Tensors, request: HandlerRequest) -> Any: ...
