from collections.abc import Mapping

import numpy as np
import pytest
from kinfer_runtime.backends.base import ModelSignature, TensorSpec
from kinfer_runtime.dataplane.warmup import warm_up, warmup_batch_sizes
from kinfer_runtime.errors import ModelLoadError


class Recording:
    """A backend stand-in: records the inputs it was warmed up with."""

    platform = "fake"
    device = "cpu"
    batch_invariant = True

    def __init__(self, *, collapse_batch: bool = False, fail: bool = False) -> None:
        self.signature = ModelSignature(
            (TensorSpec("x", "FP32", (-1, -1, 3)), TensorSpec("s", "BYTES", (-1,))),
            (TensorSpec("y", "FP32", (-1,)),),
        )
        self.seen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        self.collapse_batch = collapse_batch
        self.fail = fail

    def load(self) -> None:
        pass

    def prepare(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return inputs

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.fail:
            raise RuntimeError("no kernel for this shape")
        self.seen.append((inputs["x"].shape, inputs["s"].shape))
        assert not inputs["x"].any() and all(v == b"" for v in inputs["s"])
        rows = 1 if self.collapse_batch else inputs["x"].shape[0]
        return {"y": np.zeros(rows, np.float32)}

    def close(self) -> None:
        pass


def test_cpu_warms_powers_of_two_and_the_maximum() -> None:
    assert warmup_batch_sizes(12, padded=False, on_gpu=False) == [1, 2, 4, 8, 12]


def test_gpu_warms_every_batch_size() -> None:
    assert warmup_batch_sizes(5, padded=False, on_gpu=True) == [1, 2, 3, 4, 5]


def test_padded_batches_warm_only_the_single_size_they_run_at() -> None:
    assert warmup_batch_sizes(16, padded=True, on_gpu=True) == [16]


def test_warm_up_feeds_zeros_at_each_size_with_other_dynamic_dims_at_1() -> None:
    backend = Recording()
    assert warm_up(backend, [1, 4], batchable=True)
    assert backend.seen == [((1, 1, 3), (1,)), ((4, 1, 3), (4,))]


def test_outputs_that_ignore_the_batch_dimension_disable_batching() -> None:
    assert not warm_up(Recording(collapse_batch=True), [1, 2], batchable=True)


def test_warm_up_failure_is_a_load_error() -> None:
    with pytest.raises(ModelLoadError, match="warm-up at batch size 1 failed: no kernel"):
        warm_up(Recording(fail=True), [1], batchable=True)
