"""Lowering of the elementwise ops: ADD (int8, with broadcasting), QUANTIZE (float32 ->
int8; an int8 input goes to lowering/activation.py's requantization) and DEQUANTIZE (int8 ->
float32), and the broadcasting helpers the other binary ops share (lowering/binary.py).

The ADD parameters are TFLite's own (kernels/add.cc Prepare): left shift 20, each input
rescaled to twice the larger input scale, then to the output scale.
"""

from __future__ import annotations

import math

from pytools.model.ir import Graph, ModelError, Op, Tensor
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lowers
from pytools.model.lowering._checks import (
    expect_shape,
    fused_activation,
    int8_per_tensor,
    nonempty,
    operands,
    require_dtype,
    to_4d,
)
from pytools.model.quant import quantize_multiplier

ADD_LEFT_SHIFT = 20  # TFLite's left_shift for 8-bit ADD


def smaller_than_one_multiplier(op: Op, real: float, what: str) -> tuple[int, int]:
    """TFLite QuantizeMultiplierSmallerThanOneExp: a multiplier in (0, 1), shift <= 0."""
    if not 0.0 < real < 1.0:
        raise ModelError(
            f"{op.where()}: the {what} multiplier is {real}; TFLite requires it in (0, 1) "
            "(the output scale is too small for the input scales)"
        )
    q, shift = quantize_multiplier(real)
    if shift > 0:
        raise ModelError(f"{op.where()}: the {what} multiplier {real} does not fit a right shift")
    return q, shift


def broadcast_shape(op: Op, a: tuple[int, ...], b: tuple[int, ...]) -> list[int]:
    """TFLite CalculateShapeForBroadcast: shapes aligned on the right, each dimension equal
    or 1."""
    rank = max(len(a), len(b))
    pa = [1] * (rank - len(a)) + list(a)
    pb = [1] * (rank - len(b)) + list(b)
    out = []
    for da, db in zip(pa, pb, strict=True):
        if da != db and 1 not in (da, db):
            raise ModelError(f"{op.where()}: input shapes {list(a)} and {list(b)} cannot be broadcast")
        out.append(max(da, db))
    return out


def broadcast_strides(shape4: list[int], out4: list[int]) -> list[int]:
    """Row-major element strides of shape4, 0 along the dimensions broadcast to out4."""
    strides = [0, 0, 0, 0]
    step = 1
    for k in range(3, -1, -1):
        strides[k] = step if shape4[k] == out4[k] and shape4[k] != 1 else 0
        step *= shape4[k]
    return strides


def broadcast_params(op: Op, a: Tensor, b: Tensor, out: Tensor) -> dict[str, int | float]:
    """The output shape (dim0..3) and each input's strides (in1_stride0..3, in2_stride0..3)
    of a binary elementwise kernel with broadcasting, after checking the output's shape."""
    out_shape = broadcast_shape(op, a.shape, b.shape)
    expect_shape(op, out, out_shape)
    out4 = to_4d(op, out_shape, "the output")
    st1 = broadcast_strides(to_4d(op, a.shape, "input 1"), out4)
    st2 = broadcast_strides(to_4d(op, b.shape, "input 2"), out4)
    params: dict[str, int | float] = {f"dim{k}": out4[k] for k in range(4)}
    params |= {f"in1_stride{k}": st1[k] for k in range(4)}
    params |= {f"in2_stride{k}": st2[k] for k in range(4)}
    return params


@lowers("ADD")
def lower_add(graph: Graph, op: Op) -> KernelCall:
    (a, b), (out,) = operands(graph, op, 2)
    s1, z1 = int8_per_tensor(op, a, "input 1")
    s2, z2 = int8_per_tensor(op, b, "input 2")
    so, zo = int8_per_tensor(op, out, "output")
    for t, role in ((a, "input 1"), (b, "input 2"), (out, "output")):
        nonempty(op, t, role)
    out_shape = broadcast_shape(op, a.shape, b.shape)
    expect_shape(op, out, out_shape)
    out4 = to_4d(op, out_shape, "the output")
    a4, b4 = to_4d(op, a.shape, "input 1"), to_4d(op, b.shape, "input 2")
    st1, st2 = broadcast_strides(a4, out4), broadcast_strides(b4, out4)

    # kernels/add.cc Prepare, in double as there (the scales are float32 values).
    twice_max_input_scale = 2.0 * max(s1, s2)
    m1, sh1 = smaller_than_one_multiplier(op, s1 / twice_max_input_scale, "input 1")
    m2, sh2 = smaller_than_one_multiplier(op, s2 / twice_max_input_scale, "input 2")
    mo, sho = smaller_than_one_multiplier(
        op, twice_max_input_scale / (float(1 << ADD_LEFT_SHIFT) * so), "output"
    )
    act_min, act_max = fused_activation(op, out)

    params: dict[str, int | float] = {f"dim{k}": out4[k] for k in range(4)}
    params |= {f"in1_stride{k}": st1[k] for k in range(4)}
    params |= {f"in2_stride{k}": st2[k] for k in range(4)}
    params |= {
        "input1_offset": -z1,
        "input2_offset": -z2,
        "output_offset": zo,
        "left_shift": ADD_LEFT_SHIFT,
        "input1_multiplier": m1,
        "input1_shift": sh1,
        "input2_multiplier": m2,
        "input2_shift": sh2,
        "output_multiplier": mo,
        "output_shift": sho,
        "act_min": act_min,
        "act_max": act_max,
    }
    return KernelCall(
        "add_s8",
        params,
        [Operand(tensor=a.index), Operand(tensor=b.index), Operand(tensor=out.index, is_output=True)],
    )


@lowers("QUANTIZE")
def lower_quantize(graph: Graph, op: Op) -> KernelCall:
    (x,), (out,) = operands(graph, op, 1)
    if x.dtype == "int8":  # int8 -> int8: a requantization
        from pytools.model.lowering.activation import lower_requantize

        return lower_requantize(graph, op)
    require_dtype(op, x, "float32", "input")
    scale, zp = int8_per_tensor(op, out, "output")
    nonempty(op, x, "input")
    expect_shape(op, out, x.shape)
    return KernelCall(
        "quantize_f32_s8",
        {"count": math.prod(x.shape), "scale": scale, "zero_point": zp},
        [Operand(tensor=x.index), Operand(tensor=out.index, is_output=True)],
    )


@lowers("DEQUANTIZE")
def lower_dequantize(graph: Graph, op: Op) -> KernelCall:
    (x,), (out,) = operands(graph, op, 1)
    scale, zp = int8_per_tensor(op, x, "input")
    require_dtype(op, out, "float32", "output")
    nonempty(op, x, "input")
    expect_shape(op, out, x.shape)
    return KernelCall(
        "dequantize_s8_f32",
        {"count": math.prod(x.shape), "scale": scale, "zero_point": zp},
        [Operand(tensor=x.index), Operand(tensor=out.index, is_output=True)],
    )
