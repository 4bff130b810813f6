"""Lowering of the int8 binary elementwise ops beside ADD: MUL, SUB, MAXIMUM and MINIMUM,
each with numpy-style broadcasting (shapes aligned on the right, padded to 4-D).

The parameters are TFLite's own: MUL's single multiplier input1_scale * input2_scale /
output_scale (kernels/mul.cc Prepare, in double); SUB's are ADD's (kernels/sub.cc
PrepareGeneralSubOp: left shift 20, each input rescaled to twice the larger input scale, then
to the output scale). MAXIMUM and MINIMUM compare the int8 values as they are, so the
inputs and the output must share one quantization.
"""

from __future__ import annotations

from pytools.model.ir import Graph, Op, Tensor
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lowers
from pytools.model.lowering._checks import (
    fused_activation,
    int8_per_tensor,
    nonempty,
    operands,
    same_quantization,
)
from pytools.model.lowering.elementwise import ADD_LEFT_SHIFT, broadcast_params, smaller_than_one_multiplier
from pytools.model.quant import quantize_multiplier


def _binary_operands(graph: Graph, op: Op) -> tuple[Tensor, Tensor, Tensor]:
    (a, b), (out,) = operands(graph, op, 2)
    for t, role in ((a, "input 1"), (b, "input 2"), (out, "output")):
        int8_per_tensor(op, t, role)
        nonempty(op, t, role)
    return a, b, out


def _call(kernel: str, params: dict[str, int | float], a: int, b: int, out: int) -> KernelCall:
    return KernelCall(
        kernel, params, [Operand(tensor=a), Operand(tensor=b), Operand(tensor=out, is_output=True)]
    )


@lowers("MUL")
def lower_mul(graph: Graph, op: Op) -> KernelCall:
    a, b, out = _binary_operands(graph, op)
    (s1, z1), (s2, z2), (so, zo) = (int8_per_tensor(op, t, r) for t, r in ((a, "1"), (b, "2"), (out, "o")))
    multiplier, shift = quantize_multiplier(s1 * s2 / so)  # in double, as mul.cc
    act_min, act_max = fused_activation(op, out)
    params = broadcast_params(op, a, b, out) | {
        "input1_offset": -z1,
        "input2_offset": -z2,
        "output_offset": zo,
        "output_multiplier": multiplier,
        "output_shift": shift,
        "act_min": act_min,
        "act_max": act_max,
    }
    return _call("mul_s8", params, a.index, b.index, out.index)


@lowers("SUB")
def lower_sub(graph: Graph, op: Op) -> KernelCall:
    a, b, out = _binary_operands(graph, op)
    (s1, z1), (s2, z2), (so, zo) = (int8_per_tensor(op, t, r) for t, r in ((a, "1"), (b, "2"), (out, "o")))
    twice_max_input_scale = 2.0 * max(s1, s2)
    m1, sh1 = smaller_than_one_multiplier(op, s1 / twice_max_input_scale, "input 1")
    m2, sh2 = smaller_than_one_multiplier(op, s2 / twice_max_input_scale, "input 2")
    mo, sho = smaller_than_one_multiplier(
        op, twice_max_input_scale / (float(1 << ADD_LEFT_SHIFT) * so), "output"
    )
    act_min, act_max = fused_activation(op, out)
    params = broadcast_params(op, a, b, out) | {
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
    return _call("sub_s8", params, a.index, b.index, out.index)


@lowers("MAXIMUM", "MINIMUM")
def lower_maximum_minimum(graph: Graph, op: Op) -> KernelCall:
    a, b, out = _binary_operands(graph, op)
    # TFLite compares the stored integers whatever their scales; a converter gives all three
    # one quantization, and only then is the result the maximum of the real values.
    same_quantization(op, a, out)
    same_quantization(op, b, out)
    params = broadcast_params(op, a, b, out) | {"is_maximum": int(op.kind == "MAXIMUM")}
    return _call("maximum_minimum_s8", params, a.index, b.index, out.index)
