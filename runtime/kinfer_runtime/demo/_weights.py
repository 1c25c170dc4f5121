"""The demo classifier's architecture and its seeded random weights.

One description feeds both the ONNX graph builder and the PyTorch module, which is how the
three files end up with the same weights.
"""

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

__all__ = [
    "CLASSES",
    "IMAGE_SHAPE",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "SEED",
    "Block",
    "ConvBN",
    "DemoWeights",
    "Variant",
    "make_weights",
]

Variant = Literal["normal", "slow", "broken", "faulty"]

SEED: Final = 20240601
INPUT_NAME: Final = "input"
OUTPUT_NAME: Final = "logits"
IMAGE_SHAPE: Final = (3, 32, 32)
CLASSES: Final = 10
BN_EPSILON: Final = 1e-5

# (channels, stride) of each residual stage: a CIFAR-sized ResNet with one block per stage.
_STAGES: Final = ((64, 1), (128, 2), (256, 2))
# The slow variant adds this many extra residual blocks at full resolution: about 8x the work.
_SLOW_EXTRA_BLOCKS: Final = 20
# ...whose residual branches are scaled down so the slow model still predicts almost the same
# logits: a canary built from it differs in latency, not in answers.
_SLOW_BLOCK_SCALE: Final = 1e-3


@dataclass(frozen=True)
class ConvBN:
    """A bias-free convolution followed by inference-mode batch normalisation."""

    weight: np.ndarray  # [out, in, k, k]
    stride: int
    bn_scale: np.ndarray
    bn_bias: np.ndarray
    bn_mean: np.ndarray
    bn_var: np.ndarray

    @property
    def padding(self) -> int:
        return int(self.weight.shape[2]) // 2


@dataclass(frozen=True)
class Block:
    """A basic residual block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""

    conv1: ConvBN
    conv2: ConvBN
    shortcut: ConvBN | None  # None: identity


@dataclass(frozen=True)
class DemoWeights:
    stem: ConvBN
    blocks: tuple[Block, ...]
    fc_weight: np.ndarray  # [classes, channels]
    fc_bias: np.ndarray  # [classes]
    faulty: bool  # raise at run time on any non-zero input (see the faulty variant)


def _conv_bn(
    rng: np.random.Generator, c_in: int, c_out: int, k: int, stride: int, scale: float = 1.0
) -> ConvBN:
    """`scale` shrinks the normalised output (gamma and beta), not the work."""
    fan_in = c_in * k * k
    weight = rng.standard_normal((c_out, c_in, k, k)) * np.sqrt(2.0 / fan_in)
    return ConvBN(
        weight=weight.astype(np.float32),
        stride=stride,
        bn_scale=(rng.uniform(0.5, 1.5, c_out) * scale).astype(np.float32),
        bn_bias=(rng.standard_normal(c_out) * 0.1 * scale).astype(np.float32),
        bn_mean=(rng.standard_normal(c_out) * 0.1).astype(np.float32),
        bn_var=rng.uniform(0.5, 1.5, c_out).astype(np.float32),
    )


def _block(rng: np.random.Generator, c_in: int, c_out: int, stride: int, scale: float) -> Block:
    needs_projection = stride != 1 or c_in != c_out
    return Block(
        conv1=_conv_bn(rng, c_in, c_out, 3, stride),
        # A small `scale` makes the residual branch nearly silent: the block is nearly identity.
        conv2=_conv_bn(rng, c_out, c_out, 3, 1, scale),
        shortcut=_conv_bn(rng, c_in, c_out, 1, stride) if needs_projection else None,
    )


def make_weights(variant: Variant) -> DemoWeights:
    """Weights from a fixed seed: every build, in every format, gets the same numbers."""
    rng = np.random.default_rng(SEED)
    stem_channels = _STAGES[0][0]
    stem = _conv_bn(rng, IMAGE_SHAPE[0], stem_channels, 3, 1)
    blocks: list[Block] = []
    c_in = stem_channels
    for c_out, stride in _STAGES:
        blocks.append(_block(rng, c_in, c_out, stride, 1.0))
        c_in = c_out
    fc_weight = (rng.standard_normal((CLASSES, c_in)) / np.sqrt(c_in)).astype(np.float32)
    fc_bias = (rng.standard_normal(CLASSES) * 0.01).astype(np.float32)
    if variant == "slow":
        # Drawn after the normal weights, so the shared layers stay identical to `normal`.
        extra = [
            _block(rng, stem_channels, stem_channels, 1, _SLOW_BLOCK_SCALE)
            for _ in range(_SLOW_EXTRA_BLOCKS)
        ]
        blocks = [blocks[0], *extra, *blocks[1:]]
    return DemoWeights(
        stem=stem,
        blocks=tuple(blocks),
        fc_weight=fc_weight,
        fc_bias=fc_bias,
        faulty=variant == "faulty",
    )
