"""Lowering of the ops that move data without computing: PAD (int8) and RESHAPE.

PAD follows TFLite's kernels/pad.cc for int8 without constant values: the padding is the
output zero point, i.e. real 0.0. RESHAPE is a byte copy of unchanged row-major data.
"""

from __future__ import annotations

import math

from pytools.model.ir import Graph, ModelError, Op
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lowers
from pytools.model.lowering._checks import (
    INT32_MAX,
    constant_ints,
    expect_shape,
    int8_per_tensor,
    nonempty,
    operands,
    same_quantization,
    to_4d,
)


@lowers("PAD")
def lower_pad(graph: Graph, op: Op) -> KernelCall:
    (x,), (out,) = operands(graph, op, 1)
    int8_per_tensor(op, x, "input")
    _, out_zp = int8_per_tensor(op, out, "output")
    same_quantization(op, x, out)
    nonempty(op, x, "input")
    pad_value = out_zp
    if len(op.inputs) > 2 and op.inputs[2] >= 0:  # PADV2: its constant pad value, quantized as the output
        c = graph.tensor(op.inputs[2])
        if c.data is None or c.data.size != 1 or c.dtype != "int8":
            raise ModelError(f"{op.where()}: the pad value '{c.name}' must be a constant int8 scalar")
        same_quantization(op, c, out)
        pad_value = int(c.data.reshape(-1)[0])
    rank = len(x.shape)
    pads = constant_ints(graph, op, 1, "paddings")
    if len(pads) != 2 * rank:
        raise ModelError(f"{op.where()}: paddings must be [{rank}, 2], got {len(pads)} values")
    if min(pads, default=0) < 0:
        raise ModelError(f"{op.where()}: negative paddings {pads} are not supported")
    before, after = pads[0::2], pads[1::2]
    out_shape = [b + d + a for b, d, a in zip(before, x.shape, after, strict=True)]
    expect_shape(op, out, out_shape)
    nonempty(op, out, "output")

    in4 = to_4d(op, x.shape, "the input")
    out4 = to_4d(op, out_shape, "the output")
    before4 = [0] * (4 - rank) + before
    params: dict[str, int | float] = {f"in_dim{k}": in4[k] for k in range(4)}
    params |= {f"before{k}": before4[k] for k in range(4)}
    params |= {f"out_dim{k}": out4[k] for k in range(4)}
    params["pad_value"] = pad_value
    return KernelCall("pad_s8", params, [Operand(tensor=x.index), Operand(tensor=out.index, is_output=True)])


def _resolve_shape(op: Op, new_shape: list[int], count: int) -> list[int]:
    """A reshape target with at most one -1 filled in (TFLite reshape.cc)."""
    unknown = [k for k, d in enumerate(new_shape) if d == -1]
    if len(unknown) > 1 or any(d < -1 for d in new_shape):
        raise ModelError(f"{op.where()}: invalid new shape {new_shape}")
    known = math.prod(d for d in new_shape if d != -1)
    shape = list(new_shape)
    if unknown:
        if known == 0 or count % known:
            raise ModelError(f"{op.where()}: cannot reshape {count} elements to {new_shape}")
        shape[unknown[0]] = count // known
    return shape


@lowers("RESHAPE")
def lower_reshape(graph: Graph, op: Op) -> KernelCall:
    (x,), (out,) = operands(graph, op, 1)
    if x.dtype != out.dtype:
        raise ModelError(f"{op.where()}: input is {x.dtype} but output is {out.dtype}")
    if x.dtype == "int8":
        int8_per_tensor(op, x, "input")
        int8_per_tensor(op, out, "output")
        same_quantization(op, x, out)
    count = math.prod(x.shape)
    if math.prod(out.shape) != count:
        raise ModelError(f"{op.where()}: cannot reshape {list(x.shape)} to {list(out.shape)}")
    # The target TFLite computes: the shape input when there is one, else the option.
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        target = constant_ints(graph, op, 1, "shape")
    else:
        target = [int(d) for d in op.options.get("new_shape", out.shape)]
    expect_shape(op, out, _resolve_shape(op, target, count))
    if x.nbytes > INT32_MAX:
        raise ModelError(f"{op.where()}: input '{x.name}' is too large")
    return KernelCall(
        "reshape",
        {"nbytes": x.nbytes},
        [Operand(tensor=x.index), Operand(tensor=out.index, is_output=True)],
    )
