"""The demo classifier as a PyTorch module, saved as TorchScript and as torch.export.

Imported only when torch formats are built, so `kinfer_runtime.demo` works without torch.
"""

import json
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch import nn

from kinfer_runtime.backends.torch import SIGNATURE_FILE
from kinfer_runtime.demo._weights import (
    BN_EPSILON,
    CLASSES,
    IMAGE_SHAPE,
    INPUT_NAME,
    OUTPUT_NAME,
    ConvBN,
    DemoWeights,
)

__all__ = ["build_torch_files"]

_MAX_EXPORT_BATCH: Final = 4096


def _conv_bn(layer: ConvBN) -> nn.Sequential:
    out_ch, in_ch, k, _ = layer.weight.shape
    conv = nn.Conv2d(in_ch, out_ch, k, stride=layer.stride, padding=layer.padding, bias=False)
    bn = nn.BatchNorm2d(out_ch, eps=BN_EPSILON)
    conv.load_state_dict({"weight": torch.from_numpy(layer.weight)})
    bn.load_state_dict(
        {
            "weight": torch.from_numpy(layer.bn_scale),
            "bias": torch.from_numpy(layer.bn_bias),
            "running_mean": torch.from_numpy(layer.bn_mean),
            "running_var": torch.from_numpy(layer.bn_var),
            "num_batches_tracked": torch.tensor(0),
        }
    )
    return nn.Sequential(conv, bn)


class _Block(nn.Module):
    def __init__(self, conv1: ConvBN, conv2: ConvBN, shortcut: ConvBN | None) -> None:
        super().__init__()
        self.conv1 = _conv_bn(conv1)
        self.conv2 = _conv_bn(conv2)
        self.shortcut = nn.Identity() if shortcut is None else _conv_bn(shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv1(x))
        return torch.relu(self.conv2(y) + self.shortcut(x))


class DemoNet(nn.Module):
    fault_table: torch.Tensor

    def __init__(self, weights: DemoWeights) -> None:
        super().__init__()
        self.stem = _conv_bn(weights.stem)
        self.blocks = nn.Sequential(*(_Block(b.conv1, b.conv2, b.shortcut) for b in weights.blocks))
        self.fc = nn.Linear(weights.fc_weight.shape[1], CLASSES)
        self.fc.load_state_dict(
            {
                "weight": torch.from_numpy(weights.fc_weight),
                "bias": torch.from_numpy(weights.fc_bias),
            }
        )
        self.faulty = weights.faulty
        self.register_buffer("fault_table", torch.zeros(1))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor = self.blocks(torch.relu(self.stem(input)))
        logits: torch.Tensor = self.fc(torch.flatten(torch.mean(x, dim=(2, 3)), 1))
        if self.faulty:
            # Same fault as the ONNX graph: an index that is out of range unless the input is 0.
            index = (input.abs().amax() * 1e6).to(torch.int64).reshape(1)
            logits = logits + torch.index_select(self.fault_table, 0, index) * 0
        return logits


def _signature() -> str:
    return json.dumps(
        {
            "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *IMAGE_SHAPE]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, CLASSES]}],
        }
    )


def build_torch_files(weights: DemoWeights, torchscript: Path, exported: Path) -> None:
    net = DemoNet(weights).eval()
    extra = {SIGNATURE_FILE: _signature()}
    torch.jit.save(torch.jit.script(net), str(torchscript), _extra_files=extra)
    example = torch.from_numpy(np.zeros((2, *IMAGE_SHAPE), dtype=np.float32))
    batch = torch.export.Dim("batch", min=1, max=_MAX_EXPORT_BATCH)
    program = torch.export.export(net, (example,), dynamic_shapes={INPUT_NAME: {0: batch}})
    torch.export.save(program, str(exported), extra_files=extra)
