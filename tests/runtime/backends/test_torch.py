import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from kinfer_runtime.backends import BackendOptions
from kinfer_runtime.backends.onnx import OnnxBackend
from kinfer_runtime.backends.torch import SIGNATURE_FILE, TorchBackend
from kinfer_runtime.errors import ModelLoadError


def loaded(path: Path, **options: object) -> TorchBackend:
    backend = TorchBackend(
        path,
        BackendOptions(device="cpu", **options),
        exported=path.suffix == ".pt2",  # type: ignore[arg-type]
    )
    backend.load()
    return backend


@pytest.fixture(scope="module")
def onnx_logits(demo_dir: Path, images: np.ndarray) -> np.ndarray:
    backend = OnnxBackend(demo_dir / "model.onnx", BackendOptions(device="cpu"))
    backend.load()
    return backend.infer({"input": images[:4]})["logits"]


@pytest.mark.parametrize(
    ("file", "platform"),
    [("model.pt", "pytorch_torchscript"), ("model.pt2", "pytorch_torch_export")],
)
def test_torch_formats_load_on_cpu_and_match_the_onnx_model(
    demo_dir: Path, images: np.ndarray, onnx_logits: np.ndarray, file: str, platform: str
) -> None:
    backend = loaded(demo_dir / file)
    assert backend.platform == platform
    assert backend.device == "cpu"
    assert [(t.name, t.datatype, t.shape) for t in backend.signature.inputs] == [
        ("input", "FP32", (-1, 3, 32, 32))
    ]
    assert backend.signature.outputs[0].name == "logits"
    logits = backend.infer({"input": images[:4]})["logits"]
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, onnx_logits, atol=1e-4)


def test_read_only_request_buffers_are_accepted(demo_dir: Path, images: np.ndarray) -> None:
    frozen = np.frombuffer(images[:1].tobytes(), dtype=np.float32).reshape(1, 3, 32, 32)
    assert not frozen.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on non-writable numpy arrays
        assert loaded(demo_dir / "model.pt").infer({"input": frozen})["logits"].shape == (1, 10)


def test_reduced_precision_computes_in_fp16_but_answers_in_fp32(
    demo_dir: Path, images: np.ndarray, onnx_logits: np.ndarray
) -> None:
    # fp16 rather than bf16 here: this CI VM advertises AMX in CPUID without enabling it, and
    # oneDNN's bf16 kernels die with SIGILL. Both dtypes share the code path.
    backend = loaded(demo_dir / "model.pt", torch_dtype="fp16")
    logits = backend.infer({"input": images[:4]})["logits"]
    assert logits.dtype == np.float32
    assert not np.array_equal(logits, onnx_logits)  # really ran in reduced precision
    np.testing.assert_allclose(logits, onnx_logits, atol=0.5)


class _Pair(torch.nn.Module):
    def forward(self, x: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2, n + 1


def test_exported_program_without_a_signature_file_is_read_from_its_graph(tmp_path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(
        _Pair(),
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64)),
        dynamic_shapes={"x": {0: batch}, "n": {0: batch}},
    )
    torch.export.save(program, str(tmp_path / "pair.pt2"))
    backend = loaded(tmp_path / "pair.pt2")
    sig = backend.signature
    assert [(t.name, t.datatype, t.shape) for t in sig.inputs] == [
        ("x", "FP32", (-1, 3)),
        ("n", "INT64", (-1,)),
    ]
    assert [(t.name, t.datatype, t.shape) for t in sig.outputs] == [
        ("output__0", "FP32", (-1, 3)),
        ("output__1", "INT64", (-1,)),
    ]
    out = backend.infer({"x": np.ones((1, 3), np.float32), "n": np.array([4])})
    assert out["output__0"].tolist() == [[2, 2, 2]] and out["output__1"].tolist() == [5]


def test_torchscript_without_a_signature_is_a_clear_load_error(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(_Pair()), str(tmp_path / "pair.pt"))
    with pytest.raises(ModelLoadError, match=f"has no {SIGNATURE_FILE}"):
        loaded(tmp_path / "pair.pt")


def test_malformed_signature_is_a_load_error(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(
            torch.jit.script(_Pair()),
            str(tmp_path / "pair.pt"),
            _extra_files={SIGNATURE_FILE: json.dumps({"inputs": 3})},
        )
    with pytest.raises(ModelLoadError, match=f"invalid {SIGNATURE_FILE}"):
        loaded(tmp_path / "pair.pt")


def test_cuda_requested_without_a_gpu_is_a_load_error(demo_dir: Path) -> None:
    backend = TorchBackend(demo_dir / "model.pt", BackendOptions(device="cuda"), exported=False)
    with pytest.raises(ModelLoadError, match="torch sees no CUDA device"):
        backend.load()
