"""Lowering of int8 SOFTMAX: TFLite's reference parameters (kernels/activations.cc
SoftmaxPrepare with kernel_type kReference: PreprocessSoftmaxScaling and
CalculateInputRadius with 5 integer bits for the scaled differences)."""

from __future__ import annotations

import math

import numpy as np

from pytools.model.ir import Graph, ModelError, Op
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lowers
from pytools.model.lowering._checks import expect_shape, int8_per_tensor, nonempty, operands
from pytools.model.quant import f32, quantize_multiplier

SCALED_DIFF_INTEGER_BITS = 5


def softmax_params(op: Op, beta: float, input_scale: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) as TFLite derives them (default build,
    without TFLITE_SINGLE_ROUNDING: the multiplier is capped at 2^31 - 1)."""
    real = min(beta * input_scale * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)), float((1 << 31) - 1))
    if not real > 1.0:  # QuantizeMultiplierGreaterThanOne checks this
        raise ModelError(
            f"{op.where()}: beta {beta} * input scale {input_scale} is below 2^-26, which TFLite rejects"
        )
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(
        1.0
        * ((1 << SCALED_DIFF_INTEGER_BITS) - 1)
        * (1 << (31 - SCALED_DIFF_INTEGER_BITS))
        / (1 << left_shift)
    )
    return multiplier, left_shift, -radius


@lowers("SOFTMAX")
def lower_softmax(graph: Graph, op: Op) -> KernelCall:
    (x,), (out,) = operands(graph, op, 1)
    in_scale, _ = int8_per_tensor(op, x, "input")
    out_scale, out_zp = int8_per_tensor(op, out, "output")
    nonempty(op, x, "input")
    if len(x.shape) < 1:
        raise ModelError(f"{op.where()}: the input is a scalar")
    expect_shape(op, out, x.shape)
    # SoftmaxPrepare: int8 output is fixed to scale 1/256 (to within 0.1 %, in float) and
    # zero point -128.
    target = np.float32(1.0) / np.float32(256.0)
    if out_zp != -128 or abs(np.float32(out_scale) - target) > np.float32(0.001) * target:
        raise ModelError(
            f"{op.where()}: output '{out.name}' must have scale 1/256 and zero point -128 "
            f"(has {out_scale}, {out_zp})"
        )
    beta = f32(op.options.get("beta", 1.0))
    multiplier, left_shift, diff_min = softmax_params(op, beta, in_scale)
    depth = int(x.shape[-1])
    return KernelCall(
        "softmax_s8",
        {
            "outer_size": math.prod(x.shape) // depth,
            "depth": depth,
            "input_multiplier": multiplier,
            "input_left_shift": left_shift,
            "diff_min": diff_min,
        },
        [Operand(tensor=x.index), Operand(tensor=out.index, is_output=True)],
    )
