"""The graph IR every compiler pass reads and writes.

A Graph is what an imported int8 .tflite holds, in plain Python/numpy: tensors (shape,
type, quantization, constant data) and operators (kind, inputs, outputs, options), in the
model's execution order. It knows nothing of TFLite's flatbuffer or of any kernel; only the
list of operators it may hold comes from the kernels' one list (ops.def).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytools.errors import ToolError
from pytools.model.kernels import forward_ops

# The operators the engine runs (the .tflite builtin names), from the one list:
# firmware/kernels/ops.def (docs/operators.md has their kernels).
SUPPORTED_OPS: tuple[str, ...] = forward_ops()

# Fused activations (Conv/DepthwiseConv/FC/Add/Pool options), as TFLite names them.
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


class ModelError(ToolError):
    """The model cannot be used: malformed, unsupported, or inconsistent. Says where."""


@dataclass
class Quant:
    """Affine quantization: real = scale * (q - zero_point), per tensor or per channel."""

    scale: np.ndarray  # float32, shape (1,) or (channels,)
    zero_point: np.ndarray  # int64, same shape as scale
    axis: int = 0  # quantized dimension when per channel

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # "int8", "uint8", "int16", "int32", "int64", "float32"
    quant: Quant | None = None
    data: np.ndarray | None = None  # constant tensors (weights, biases, shapes); None for activations
    # Persistent RAM state initialised from `data` (trained weight slices, biases, the RNG):
    # it survives from one training step to the next.
    persistent: bool = False

    @property
    def is_constant(self) -> bool:
        return self.data is not None and not self.persistent

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class Op:
    index: int  # position in the model's execution order
    kind: str  # one of SUPPORTED_OPS
    inputs: list[int]  # tensor indices; -1 for an omitted optional input (e.g. no bias)
    outputs: list[int]
    # Options, normalised: padding "SAME"/"VALID", stride_h/stride_w, dilation_h/dilation_w,
    # filter_h/filter_w, depth_multiplier, activation (one of ACTIVATIONS), keep_dims, beta,
    # new_shape, ... as the op needs.
    options: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        return f"operator #{self.index} ({self.kind})"


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    name: str = ""
    description: str = ""

    def tensor(self, i: int) -> Tensor:
        return self.tensors[i]

    def op_inputs(self, op: Op) -> list[Tensor | None]:
        return [self.tensors[i] if i >= 0 else None for i in op.inputs]

    def op_outputs(self, op: Op) -> list[Tensor]:
        return [self.tensors[i] for i in op.outputs]
