from pathlib import Path

import numpy as np
import onnx
import pytest
from kinfer_runtime.backends import BackendOptions, detect_format, open_backend
from kinfer_runtime.backends.onnx import OnnxBackend
from kinfer_runtime.errors import ModelLoadError
from onnx import TensorProto, helper

CPU = BackendOptions(device="cpu")


def loaded(path: Path, options: BackendOptions = CPU) -> OnnxBackend:
    backend = OnnxBackend(path, options)
    backend.load()
    return backend


def test_signature_is_read_from_the_model_with_a_dynamic_batch(demo_dir: Path) -> None:
    backend = loaded(demo_dir / "model.onnx")
    sig = backend.signature
    assert [(t.name, t.datatype, t.shape) for t in sig.inputs] == [
        ("input", "FP32", (-1, 3, 32, 32))
    ]
    assert [(t.name, t.datatype, t.shape) for t in sig.outputs] == [("logits", "FP32", (-1, 10))]
    assert sig.batchable
    assert backend.platform == "onnxruntime_onnx"


def test_static_batch_dimension_is_not_batchable(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "static",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "static.onnx"))
    assert not loaded(tmp_path / "static.onnx").signature.batchable


def test_cpu_session_runs_on_cpu_and_is_batch_invariant(demo_dir: Path, images) -> None:
    backend = loaded(demo_dir / "model.onnx")
    assert backend.device == "cpu"
    assert backend.batch_invariant
    together = backend.infer({"input": images[:16]})["logits"]
    alone = np.concatenate(
        [backend.infer({"input": images[i : i + 1]})["logits"] for i in range(16)]
    )
    np.testing.assert_array_equal(together, alone)  # what batch_invariant promises


def test_auto_device_without_a_gpu_falls_back_to_cpu(demo_dir: Path) -> None:
    assert loaded(demo_dir / "model.onnx", BackendOptions(device="auto")).device == "cpu"


def test_cuda_requested_without_a_cuda_provider_is_a_load_error(demo_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="device cuda requested"):
        loaded(demo_dir / "model.onnx", BackendOptions(device="cuda"))


def test_invalid_graph_is_a_load_error(variant_dir) -> None:
    with pytest.raises(ModelLoadError, match=r"onnxruntime cannot load model.onnx"):
        loaded(variant_dir("broken") / "model.onnx")


def test_non_utf8_string_input_is_invalid_input(types_model: Path) -> None:
    from kinfer_runtime.errors import InvalidInput

    backend = loaded(types_model)
    with pytest.raises(InvalidInput, match="must be UTF-8"):
        backend.prepare({"text": np.array([[b"\xff", b"ok"]], dtype=object)})


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("m.onnx", "onnx"),
        ("m.pt", "torchscript"),
        ("m.PTH", "torchscript"),
        ("m.pt2", "torch-export"),
    ],
)
def test_format_is_detected_from_the_extension(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


def test_unknown_extension_asks_for_format() -> None:
    with pytest.raises(ModelLoadError, match="pass --format"):
        detect_format("model.bin")


def test_open_backend_does_not_import_torch_for_onnx(demo_dir: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from kinfer_runtime.backends import "
        "BackendOptions, open_backend; "
        f"b = open_backend(Path({str(demo_dir / 'model.onnx')!r}), 'onnx', BackendOptions()); "
        "b.load(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert open_backend  # imported above for the child's sake too
