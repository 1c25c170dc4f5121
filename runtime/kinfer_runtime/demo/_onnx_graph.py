"""Builds the demo classifier as an ONNX graph directly from its weights.

Building the graph by hand, rather than exporting from PyTorch, keeps `model.onnx` independent of
torch's exporters (and of torch being installed at all).
"""

from pathlib import Path
from typing import Any, Final

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from kinfer_runtime.demo._weights import (
    BN_EPSILON,
    CLASSES,
    IMAGE_SHAPE,
    INPUT_NAME,
    OUTPUT_NAME,
    ConvBN,
    DemoWeights,
)

__all__ = ["build_onnx", "write_broken_onnx"]

# Opset 17 is supported by every onnxruntime release we could be paired with.
_OPSET: Final = 17


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counter = 0

    def name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    def const(self, prefix: str, value: np.ndarray) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def conv_bn(self, x: str, layer: ConvBN, *, relu: bool) -> str:
        k = int(layer.weight.shape[2])
        y = self.op(
            "Conv",
            [x, self.const("w", layer.weight)],
            kernel_shape=[k, k],
            strides=[layer.stride, layer.stride],
            pads=[layer.padding] * 4,
        )
        y = self.op(
            "BatchNormalization",
            [
                y,
                self.const("bn_scale", layer.bn_scale),
                self.const("bn_bias", layer.bn_bias),
                self.const("bn_mean", layer.bn_mean),
                self.const("bn_var", layer.bn_var),
            ],
            epsilon=BN_EPSILON,
        )
        return self.op("Relu", [y]) if relu else y


def _fault_probe(g: _GraphBuilder, x: str) -> str:
    """A [1] tensor that is 0 for an all-zero input and an out-of-range Gather otherwise."""
    peak = g.op("ReduceMax", [g.op("Abs", [x])], keepdims=0)
    scaled = g.op("Mul", [peak, g.const("scale", np.array(1e6, dtype=np.float32))])
    index = g.op(
        "Reshape", [g.op("Cast", [scaled], to=TensorProto.INT64), g.const("one", np.array([1]))]
    )
    return g.op("Gather", [g.const("table", np.zeros(1, dtype=np.float32)), index], axis=0)


def _graph(weights: DemoWeights) -> onnx.ModelProto:
    g = _GraphBuilder()
    x = g.conv_bn(INPUT_NAME, weights.stem, relu=True)
    for block in weights.blocks:
        y = g.conv_bn(x, block.conv1, relu=True)
        y = g.conv_bn(y, block.conv2, relu=False)
        shortcut = x if block.shortcut is None else g.conv_bn(x, block.shortcut, relu=False)
        x = g.op("Relu", [g.op("Add", [y, shortcut])])
    pooled = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    logits = g.op(
        "Gemm",
        [pooled, g.const("fc_w", weights.fc_weight), g.const("fc_b", weights.fc_bias)],
        transB=1,
    )
    if weights.faulty:
        zero = g.op(
            "Mul", [_fault_probe(g, INPUT_NAME), g.const("zero", np.array(0, dtype=np.float32))]
        )
        logits = g.op("Add", [logits, zero])
    g.nodes.append(helper.make_node("Identity", [logits], [OUTPUT_NAME]))
    graph = helper.make_graph(
        g.nodes,
        "kinfer_demo_resnet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *IMAGE_SHAPE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", CLASSES])],
        g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="kinfer-demo"
    )
    model.ir_version = 8
    return model


def build_onnx(weights: DemoWeights, path: Path) -> None:
    model = _graph(weights)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_broken_onnx(weights: DemoWeights, path: Path) -> None:
    """A well-formed file whose graph is invalid: a node reads a tensor nothing produces."""
    model = _graph(weights)
    first = model.graph.node[0]
    first.input[0] = "undefined_tensor"
    onnx.save(model, str(path))
