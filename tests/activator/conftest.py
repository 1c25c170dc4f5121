"""Fixtures of the activator tests (helpers in support/activator.py)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from kinfer_runtime.demo import build_demo_model
from support.activator import ActivatorSettings, ActivatorThread, Runtime, spawn_runtime

HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_demo_model(out, with_torch=False)
    return out / "model.onnx"


@pytest.fixture(scope="session")
def slow_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo-slow")
    build_demo_model(out, "slow", with_torch=False)
    return out / "model.onnx"


@pytest.fixture(scope="session")
def runtimes(demo_onnx: Path) -> Iterator[list[Runtime]]:
    """Two runtimes of the demo model (session-wide: each takes seconds to load)."""
    with spawn_runtime(demo_onnx) as a, spawn_runtime(demo_onnx) as b:
        yield [a, b]


@pytest.fixture(scope="session")
def slow_runtime(slow_onnx: Path) -> Iterator[Runtime]:
    with spawn_runtime(slow_onnx, **{"max-batch-size": "1"}) as slow:
        yield slow


# --- requests ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def infer_body() -> tuple[bytes, dict[str, str]]:
    """One demo image, binary tensor extension."""
    image = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [1, 3, 32, 32],
                    "parameters": {"binary_data_size": image.nbytes},
                }
            ]
        }
    ).encode()
    return header + image.tobytes(), {HEADER: str(len(header))}


@pytest.fixture
def activator() -> Iterator[ActivatorThread]:
    running = ActivatorThread(ActivatorSettings(host="127.0.0.1", metrics_port=0, drain_delay_s=0))
    yield running
    running.close()
