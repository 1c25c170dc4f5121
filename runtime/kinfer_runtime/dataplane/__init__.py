"""The protocol-neutral data plane: model registry, readiness, validation and dynamic batching."""

from kinfer_runtime.dataplane.batcher import Batcher, BatchObserver, BatchPolicy
from kinfer_runtime.dataplane.model import ServedModel
from kinfer_runtime.dataplane.readiness import Phase, Readiness
from kinfer_runtime.dataplane.registry import ModelRegistry

__all__ = [
    "BatchObserver",
    "BatchPolicy",
    "Batcher",
    "ModelRegistry",
    "Phase",
    "Readiness",
    "ServedModel",
]
