import numpy as np
import pytest
from kinfer_runtime.backends.base import ModelSignature, TensorSpec
from kinfer_runtime.dataplane.validation import check_inputs
from kinfer_runtime.errors import InvalidInput

IMAGE = TensorSpec("image", "FP32", (-1, 3, 4))
MASK = TensorSpec("mask", "BOOL", (-1, 4))
BATCHED = ModelSignature((IMAGE, MASK), (TensorSpec("out", "FP32", (-1, 2)),))
FIXED = ModelSignature((TensorSpec("image", "FP32", (3, 4)),), (TensorSpec("out", "FP32", (2,)),))


def tensors(n: int = 2, m: int | None = None) -> dict[str, np.ndarray]:
    return {
        "image": np.zeros((n, 3, 4), np.float32),
        "mask": np.zeros((n if m is None else m, 4), bool),
    }


def test_valid_batched_request_reports_its_rows() -> None:
    assert check_inputs(BATCHED, tensors(5)) == 5


def test_unbatched_model_counts_as_one_row() -> None:
    assert check_inputs(FIXED, {"image": np.zeros((3, 4), np.float32)}) == 1


def test_unknown_input_name_is_rejected_with_the_known_names() -> None:
    with pytest.raises(InvalidInput, match=r"unknown input 'imagee'.*\['image', 'mask'\]"):
        check_inputs(BATCHED, {**tensors(), "imagee": np.zeros(1)})


def test_missing_input_is_rejected() -> None:
    with pytest.raises(InvalidInput, match=r"missing input.*mask"):
        check_inputs(BATCHED, {"image": np.zeros((1, 3, 4), np.float32)})


def test_wrong_datatype_names_both_datatypes() -> None:
    bad = {**tensors(), "image": np.zeros((2, 3, 4), np.float64)}
    with pytest.raises(InvalidInput, match="datatype FP64, model expects FP32"):
        check_inputs(BATCHED, bad)


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (2, 4, 4), (2, 3, 4, 1)])
def test_wrong_shape_is_rejected(shape: tuple[int, ...]) -> None:
    bad = {**tensors(), "image": np.zeros(shape, np.float32)}
    with pytest.raises(InvalidInput, match=r"shape .* model expects \[-1,3,4\]"):
        check_inputs(BATCHED, bad)


def test_inputs_that_disagree_on_batch_size_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="disagree on the batch dimension"):
        check_inputs(BATCHED, tensors(2, 3))


def test_empty_batch_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="batch dimension is 0"):
        check_inputs(BATCHED, tensors(0))
