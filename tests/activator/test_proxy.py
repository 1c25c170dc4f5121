"""The headers the activator and the runtime agree on, and what it never imports."""

from __future__ import annotations

import ast
from pathlib import Path

import kinfer_activator
from kinfer_activator import proxy
from kinfer_activator.endpoints import CLASSIFIED_PORT_NAME
from kinfer_operator import runtime_contract as rc
from kinfer_runtime.mirror import SHADOW_HEADER
from kinfer_runtime.routes import inference


def test_markers_and_queue_depth_header_match_the_runtime() -> None:
    assert proxy.COLD_START_MARKER_HEADER == inference.COLD_START_MARKER_HEADER
    assert proxy.QUEUE_DEPTH_HEADER == inference.QUEUE_DEPTH_HEADER
    assert {
        inference.PINNED_MARKER_HEADER,
        SHADOW_HEADER,
        inference.COLD_START_MARKER_HEADER,
    } == proxy.MARKER_HEADERS
    assert CLASSIFIED_PORT_NAME == rc.CLASSIFIED_PORT_NAME


def test_model_in_path_reads_open_inference_protocol_paths() -> None:
    assert proxy.model_in_path("/v2/models/resnet/infer") == "resnet"
    assert proxy.model_in_path("/v2/models/resnet/versions/2/infer") == "resnet"
    assert proxy.model_in_path("/v2/models/resnet") == "resnet"
    assert proxy.model_in_path("/v2/health/ready") is None


def test_the_activator_imports_neither_the_operator_nor_the_runtime() -> None:
    """It ships beside them; the routing table and the runtime's headers are the contract."""
    package = Path(kinfer_activator.__file__).parent
    imported: set[str] = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
    assert not imported & {"kinfer_operator", "kinfer_runtime"}
