"""The demo model and its misbehaving variants are real models that behave as advertised."""

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from kinfer_runtime.backends import BackendOptions
from kinfer_runtime.backends.onnx import OnnxBackend
from kinfer_runtime.backends.torch import TorchBackend
from kinfer_runtime.demo import build_demo_model
from kinfer_runtime.errors import ModelLoadError

CPU = BackendOptions(device="cpu")


def onnx(path: Path) -> OnnxBackend:
    backend = OnnxBackend(path, CPU)
    backend.load()
    return backend


def test_build_is_deterministic(tmp_path: Path, demo_dir: Path) -> None:
    build_demo_model(tmp_path, with_torch=False)
    assert (tmp_path / "model.onnx").read_bytes() == (demo_dir / "model.onnx").read_bytes()


def test_all_three_formats_carry_the_same_weights(demo_dir: Path, images: np.ndarray) -> None:
    x = {"input": images[:4]}
    expected = onnx(demo_dir / "model.onnx").infer(x)["logits"]
    for file, exported in (("model.pt", False), ("model.pt2", True)):
        backend = TorchBackend(demo_dir / file, CPU, exported=exported)
        backend.load()
        np.testing.assert_allclose(backend.infer(x)["logits"], expected, atol=1e-4)
    assert expected.shape == (4, 10)
    assert np.ptp(expected, axis=0).max() > 0.1  # the logits depend on the image


def _seconds_per_call(backend: OnnxBackend, x: np.ndarray) -> float:
    backend.infer({"input": x})
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        backend.infer({"input": x})
        best = min(best, time.perf_counter() - t0)
    return best


def test_slow_variant_does_several_times_the_work_and_nearly_the_same_answers(
    demo_dir: Path, variant_dir, images: np.ndarray
) -> None:
    normal, slow = onnx(demo_dir / "model.onnx"), onnx(variant_dir("slow") / "model.onnx")
    x = images[:4]
    assert _seconds_per_call(slow, x) > 3 * _seconds_per_call(normal, x)
    np.testing.assert_allclose(
        slow.infer({"input": x})["logits"], normal.infer({"input": x})["logits"], atol=0.05
    )


def test_broken_variant_fails_to_load_in_every_format(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        build_demo_model(tmp_path, "broken")
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        onnx(tmp_path / "model.onnx")
    for file, exported in (("model.pt", False), ("model.pt2", True)):
        with pytest.raises(ModelLoadError, match="torch cannot load"):
            TorchBackend(tmp_path / file, CPU, exported=exported).load()


def test_faulty_variant_passes_a_zero_warm_up_then_fails_on_real_input(
    variant_dir, images: np.ndarray
) -> None:
    backend = onnx(variant_dir("faulty") / "model.onnx")
    assert backend.infer({"input": np.zeros((2, 3, 32, 32), np.float32)})["logits"].shape == (2, 10)
    with pytest.raises(Exception, match=r"out of bounds|out of range|indices"):
        backend.infer({"input": images[:2]})
