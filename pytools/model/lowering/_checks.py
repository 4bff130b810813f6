"""Checks shared by the lowerings of the int8 elementwise, pooling, shape and softmax ops.

Each raises ModelError naming the operator, so a user learns which op of the model the
kernels cannot run and why.
"""

from __future__ import annotations

import math

from pytools.model.ir import ACTIVATIONS, Graph, ModelError, Op, Tensor
from pytools.model.quant import activation_range, f32

INT32_MAX = 2**31 - 1


def operands(graph: Graph, op: Op, n_in: int, n_out: int = 1) -> tuple[list[Tensor], list[Tensor]]:
    """The op's first n_in inputs (all present) and its n_out outputs."""
    ins = graph.op_inputs(op)
    outs = graph.op_outputs(op)
    if len(ins) < n_in or any(t is None for t in ins[:n_in]) or len(outs) != n_out:
        raise ModelError(
            f"{op.where()}: expected {n_in} input(s) and {n_out} output(s), got {len(ins)} and {len(outs)}"
        )
    return [t for t in ins[:n_in] if t is not None], outs


def require_dtype(op: Op, t: Tensor, dtype: str, role: str) -> None:
    if t.dtype != dtype:
        raise ModelError(f"{op.where()}: {role} '{t.name}' is {t.dtype}; only {dtype} is supported")


def per_tensor(op: Op, t: Tensor, role: str) -> tuple[float, int]:
    """(scale as TFLite holds it, zero point) of an int8 tensor quantized per tensor."""
    q = t.quant
    if q is None or q.scale.size == 0:
        raise ModelError(f"{op.where()}: {role} '{t.name}' has no quantization parameters")
    if q.per_channel:
        raise ModelError(f"{op.where()}: {role} '{t.name}' is quantized per channel; only per tensor")
    scale, zp = f32(q.scale[0]), int(q.zero_point[0])
    if not (math.isfinite(scale) and scale > 0.0):
        raise ModelError(f"{op.where()}: {role} '{t.name}' has scale {scale}; it must be positive")
    if not -128 <= zp <= 127:
        raise ModelError(f"{op.where()}: {role} '{t.name}' has zero point {zp}, outside int8")
    return scale, zp


def int8_per_tensor(op: Op, t: Tensor, role: str) -> tuple[float, int]:
    require_dtype(op, t, "int8", role)
    return per_tensor(op, t, role)


def same_quantization(op: Op, a: Tensor, b: Tensor, tolerance: float = 0.0) -> None:
    """The op moves values without requantizing, so both sides must mean the same reals.
    TFLite does not check (it would silently reinterpret the quanta); a converter never
    produces such a model."""
    sa, za = per_tensor(op, a, "input")
    sb, zb = per_tensor(op, b, "output")
    if za != zb or abs(sa - sb) > tolerance:
        raise ModelError(
            f"{op.where()}: input '{a.name}' (scale {sa}, zero point {za}) and output '{b.name}' "
            f"(scale {sb}, zero point {zb}) must share quantization: the op does not rescale"
        )


def nonempty(op: Op, t: Tensor, role: str) -> None:
    if any(d <= 0 for d in t.shape):
        raise ModelError(
            f"{op.where()}: {role} '{t.name}' has shape {list(t.shape)}; empty tensors are not supported"
        )
    if math.prod(t.shape) > INT32_MAX:
        raise ModelError(f"{op.where()}: {role} '{t.name}' is too large")


def to_4d(op: Op, shape: tuple[int, ...] | list[int], role: str) -> list[int]:
    """A shape of rank <= 4 padded with leading 1s (TFLite's RuntimeShape::ExtendedShape)."""
    if len(shape) > 4:
        raise ModelError(f"{op.where()}: {role} has rank {len(shape)}; at most 4 is supported")
    return [1] * (4 - len(shape)) + [int(d) for d in shape]


def expect_shape(op: Op, t: Tensor, shape: tuple[int, ...] | list[int]) -> None:
    """TFLite computes the output shape itself (and would resize the tensor); the model's
    declared shape must agree, or the plan's buffers would be wrong."""
    if tuple(t.shape) != tuple(shape):
        raise ModelError(
            f"{op.where()}: output '{t.name}' has shape {list(t.shape)} but the op produces {list(shape)}"
        )


def constant_ints(graph: Graph, op: Op, index: int, role: str) -> list[int]:
    """The values of a constant int32/int64 input (axes, paddings, shapes)."""
    if index >= len(op.inputs) or op.inputs[index] < 0:
        raise ModelError(f"{op.where()}: missing {role} input")
    t = graph.tensor(op.inputs[index])
    if t.data is None:
        raise ModelError(f"{op.where()}: {role} '{t.name}' must be a constant tensor")
    if t.dtype not in ("int32", "int64"):
        raise ModelError(f"{op.where()}: {role} '{t.name}' is {t.dtype}; expected int32")
    return [int(v) for v in t.data.reshape(-1)]


def fused_activation(op: Op, out: Tensor) -> tuple[int, int]:
    """The op's fused activation as an int8 clamp range (TFLite
    CalculateActivationRangeQuantized on the output's quantization)."""
    act = op.options.get("activation", "NONE")
    if act not in ACTIVATIONS:
        raise ModelError(f"{op.where()}: unknown fused activation {act!r}")
    if out.quant is None:
        raise ModelError(f"{op.where()}: output '{out.name}' has no quantization parameters")
    return activation_range(act, out.quant)
