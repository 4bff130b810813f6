"""Lowering of the input gradients of the elementwise, activation and movement operators
(issue 12; pytools/train/autodiff.py emits them):
- MUL_GRAD_INPUT: mul_s8_grad_input, for one of MUL's inputs (option `input`: 0 or 1),
  from MUL's own broadcast geometry;
- ADD_GRAD_INPUT (a broadcast input), SUB/MAXIMUM/MINIMUM_GRAD_INPUT: binary_s8_grad_input,
  G_y summed over the broadcast dimensions, negated for SUB's second input, routed to the
  input that won for MAXIMUM and MINIMUM;
- LOGISTIC/TANH/HARD_SWISH/RELU/RELU6/RELU_N1_TO_1/LEAKY_RELU_GRAD_INPUT:
  unary_s8_grad_input, given the float function's derivative at each of the 256 dequantized
  int8 inputs as an int32 table of 23 bits (derivative_table);
- CONCATENATION_GRAD_INPUT: the strided_slice kernel cuts input `input`'s part out of the
  output gradient (the scale passes unchanged: CONCATENATION's int8 inputs share the
  output's quantization, so the real values are the same);
- TRANSPOSE_GRAD_INPUT: the transpose kernel with the inverse permutation;
- RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT: resize_nearest_neighbor_grad_input, given which input
  row and column each output row and column copies (nearest_indices).
"""

from __future__ import annotations

import math

import numpy as np

from pytools.model.ir import Graph, ModelError, Op
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lower, lowers
from pytools.model.lowering._checks import constant_ints, int8_per_tensor
from pytools.model.lowering.movement import TRANSPOSE_RANK, simplify_transpose

F32 = np.float32
SLICE_RANK = 5  # the strided_slice kernel's dimensions
# |G_y_q * (F_q - z_f)| <= 127 * 255: this many summed products always fit an int32.
MUL_MAX_SUMMED = (2**31 - 1) // (127 * 255)


def _forward(g: Graph, op: Op) -> Op:
    return g.ops[op.options["forward"]]


def _grad_io(op: Op, *middle: Operand) -> list[Operand]:
    """G_y, its scale, any further inputs, G_x and its scale (written)."""
    gy, sy = op.inputs[:2]
    gx, sx = op.outputs
    return [Operand(gy), Operand(sy), *middle, Operand(gx, is_output=True), Operand(sx, is_output=True)]


# ---- MUL -------------------------------------------------------------------------------


@lowers("MUL_GRAD_INPUT")
def _mul_grad(g: Graph, op: Op) -> KernelCall:
    fwd_op = _forward(g, op)
    fwd = lower(g, fwd_op).params
    k = int(op.options["input"])  # 0: input 1's gradient, 1: input 2's
    this, other = (1, 2) if k == 0 else (2, 1)
    x, f, y = g.tensor(fwd_op.inputs[k]), g.tensor(fwd_op.inputs[1 - k]), g.tensor(fwd_op.outputs[0])
    s_f, _ = int8_per_tensor(fwd_op, f, f"input {2 - k}")
    size = math.prod(x.shape)
    summed = math.prod(y.shape) // size
    if summed > MUL_MAX_SUMMED:
        raise ModelError(
            f"{fwd_op.where()}: the gradient of input '{x.name}' sums {summed} products per element "
            f"(it is broadcast over them); the int32 accumulator holds at most {MUL_MAX_SUMMED}"
        )
    params: dict[str, int | float] = {f"dim{d}": fwd[f"dim{d}"] for d in range(4)}
    # broadcast4.def: in1 is this input (its gradient sums where its stride is 0), in2 the other
    params |= {f"in1_stride{d}": fwd[f"in{this}_stride{d}"] for d in range(4)}
    params |= {f"in2_stride{d}": fwd[f"in{other}_stride{d}"] for d in range(4)}
    params |= {"this_size": size, "other_offset": fwd[f"input{other}_offset"], "other_scale": s_f}
    return KernelCall("mul_s8_grad_input", params, _grad_io(op, Operand(f.index)))


# ---- ADD (broadcast), SUB, MAXIMUM, MINIMUM: derivatives 0 or +-1 ----------------------

# select: which elements pass, comparing this input with the other (TensorFlow's
# MaximumGrad gives x the gradient where x >= y, MinimumGrad where x <= y; y gets the rest).
_SELECT = {"MAXIMUM": (1, 2), "MINIMUM": (3, 4)}  # (input 1, input 2): this 1 >=, 2 >, 3 <=, 4 < other


@lowers("ADD_GRAD_INPUT", "SUB_GRAD_INPUT", "MAXIMUM_GRAD_INPUT", "MINIMUM_GRAD_INPUT")
def _binary_grad(g: Graph, op: Op) -> KernelCall:
    """Inputs: G_y, its scale, and for MAXIMUM / MINIMUM this and the other forward input."""
    fwd_op = _forward(g, op)
    fwd = lower(g, fwd_op).params
    k = int(op.options["input"])
    this, other = (1, 2) if k == 0 else (2, 1)
    x = g.tensor(fwd_op.inputs[k])
    select = _SELECT[fwd_op.kind][k] if fwd_op.kind in _SELECT else 0
    params: dict[str, int | float] = {f"dim{d}": fwd[f"dim{d}"] for d in range(4)}
    # broadcast4.def: in1 is this input (its gradient sums where its stride is 0), in2 the other
    params |= {f"in1_stride{d}": fwd[f"in{this}_stride{d}"] for d in range(4)}
    params |= {f"in2_stride{d}": fwd[f"in{other}_stride{d}"] for d in range(4)}
    params |= {
        "this_size": math.prod(x.shape),
        "sign": -1 if fwd_op.kind == "SUB" and k == 1 else 1,
        "select": select,
    }
    # Without a selection the kernel reads neither input: G_y stands in (alive already).
    a, b = (op.inputs[2], op.inputs[3]) if select else (op.inputs[0], op.inputs[0])
    return KernelCall("binary_s8_grad_input", params, _grad_io(op, Operand(a), Operand(b)))


# ---- functions of one variable: derivative tables ------------------------------------


def _derivative(kind: str, x: np.ndarray, alpha: float) -> np.ndarray:
    """The float function's derivative at x, as TensorFlow's gradient of the float op gives
    it (its side at each kink: ReluGrad passes where x > 0, Relu6Grad where 0 < x < 6, a
    clip to [-1, 1] (maximum, minimum) where -1 <= x <= 1, LeakyReluGrad alpha where x <= 0;
    hard swish x * relu6(x + 3) / 6 differentiated by the product rule)."""
    x = x.astype(np.float64)
    inside = lambda lo, hi: ((x > lo) & (x < hi)).astype(np.float64)  # noqa: E731
    if kind == "LOGISTIC":
        s = 1.0 / (1.0 + np.exp(-x))
        return s * (1.0 - s)
    if kind == "TANH":
        return 1.0 - np.tanh(x) ** 2
    if kind == "HARD_SWISH":
        xf = x.astype(F32)
        t = xf + F32(3.0)  # the kink decided in float32, as TensorFlow's float op decides it
        return np.clip(t.astype(np.float64), 0.0, 6.0) / 6.0 + x * ((t > 0) & (t < 6)) / 6.0
    if kind == "RELU":
        return (x > 0).astype(np.float64)
    if kind == "RELU6":
        return inside(0.0, 6.0)
    if kind == "RELU_N1_TO_1":
        return ((x >= -1.0) & (x <= 1.0)).astype(np.float64)
    if kind == "LEAKY_RELU":
        return np.where(x > 0, 1.0, float(F32(alpha)))
    raise ModelError(f"no derivative for {kind}")


TABLE_MAX = 2**23 - 1  # |G_y_q| <= 128 times this fits an int32
UNARY_GRADS = ("LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU")


def derivative_table(
    kind: str, scale: float, zero_point: int, alpha: float = 0.2
) -> tuple[np.ndarray, float]:
    """(int32 [256] table indexed by the input's byte, its float32 scale): the derivative of
    the operator's float function at each dequantized int8 input s (q - z), in float32 as the
    kernels dequantize."""
    q = np.arange(-128, 128)
    x = F32(scale) * (q - zero_point).astype(F32)
    d = _derivative(kind, x, alpha)
    top = float(np.max(np.abs(d)))
    t_scale = F32(top / TABLE_MAX)
    table = np.zeros(256, np.int32)
    if top > 0:
        table[q & 0xFF] = np.clip(np.round(d / float(t_scale)), -TABLE_MAX, TABLE_MAX).astype(np.int32)
    return table, float(t_scale)


def _unary_grad(g: Graph, op: Op) -> KernelCall:
    fwd_op = _forward(g, op)
    x = g.tensor(fwd_op.inputs[0])
    s, z = int8_per_tensor(fwd_op, x, "input")
    table, t_scale = derivative_table(fwd_op.kind, s, z, float(fwd_op.options.get("alpha", 0.2)))
    params = {"count": math.prod(x.shape), "table_scale": t_scale}
    gy, sy, saved = op.inputs  # saved: the forward input x (autodiff lists it, so it lives)
    gx, sx = op.outputs
    operands = [
        Operand(saved),
        Operand(gy),
        Operand(sy),
        Operand(data=table),
        Operand(gx, is_output=True),
        Operand(sx, is_output=True),
    ]
    return KernelCall("unary_s8_grad_input", params, operands)


for _kind in UNARY_GRADS:
    lowers(f"{_kind}_GRAD_INPUT")(_unary_grad)


# ---- movement: the forward kernels on the gradient -------------------------------------


@lowers("CONCATENATION_GRAD_INPUT")
def _concatenation_grad(g: Graph, op: Op) -> KernelCall:
    """Input `input`'s slice of G_y along the axis (inputs: G_y; outputs: G_x)."""
    fwd_op = _forward(g, op)
    xs = [i for i in fwd_op.inputs if i >= 0]
    out = g.tensor(fwd_op.outputs[0])
    rank = len(out.shape)
    if rank > SLICE_RANK:
        raise ModelError(
            f"{fwd_op.where()}: rank {rank}; CONCATENATION's gradient supports at most {SLICE_RANK}"
        )
    axis = int(fwd_op.options.get("axis", 0)) % rank
    k = int(op.options["input"])
    start = sum(g.tensor(i).shape[axis] for i in xs[:k])
    x = g.tensor(xs[k])
    pad = SLICE_RANK - rank
    dims, counts = [1] * pad + list(out.shape), [1] * pad + list(x.shape)
    starts = [0] * SLICE_RANK
    starts[pad + axis] = start
    params: dict[str, int | float] = {"elem_size": 1}
    params |= {f"in_dim{d}": dims[d] for d in range(SLICE_RANK)}
    params |= {f"out_dim{d}": counts[d] for d in range(SLICE_RANK)}
    params |= {f"start{d}": starts[d] for d in range(SLICE_RANK)}
    params |= {f"step{d}": 1 for d in range(SLICE_RANK)}
    return KernelCall(
        "strided_slice", params, [Operand(op.inputs[0]), Operand(op.outputs[0], is_output=True)]
    )


@lowers("TRANSPOSE_GRAD_INPUT")
def _transpose_grad(g: Graph, op: Op) -> KernelCall:
    """G_y transposed back by the inverse permutation (inputs: G_y; outputs: G_x)."""
    fwd_op = _forward(g, op)
    perm = constant_ints(g, fwd_op, 1, "permutation")
    inverse = [perm.index(k) for k in range(len(perm))]
    y = g.tensor(fwd_op.outputs[0])
    dims, small_perm = simplify_transpose(list(y.shape), inverse)
    pad = TRANSPOSE_RANK - len(dims)
    dims6 = [1] * pad + dims
    perm6 = list(range(pad)) + [p + pad for p in small_perm]
    params: dict[str, int | float] = {"elem_size": 1}
    params |= {f"in_dim{d}": dims6[d] for d in range(TRANSPOSE_RANK)}
    params |= {f"perm{d}": perm6[d] for d in range(TRANSPOSE_RANK)}
    return KernelCall("transpose", params, [Operand(op.inputs[0]), Operand(op.outputs[0], is_output=True)])


def nearest_indices(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """The input index each output index copies: TFLite's GetNearestNeighbor in float32, the
    forward kernel's steps (resize_nearest_neighbor.c's nearest())."""
    if align_corners and out_size > 1:
        scale = F32(in_size - 1) / F32(out_size - 1)
    else:
        scale = F32(in_size) / F32(out_size)
    offset = F32(0.5) if half_pixel_centers else F32(0.0)
    out = np.zeros(out_size, np.int32)
    for i in range(out_size):
        v = (F32(i) + offset) * scale
        r = int(v)
        if align_corners and v - F32(r) >= F32(0.5):
            r += 1
        out[i] = min(r, in_size - 1)
    return out


@lowers("RESIZE_NEAREST_NEIGHBOR_GRAD_INPUT")
def _resize_nearest_grad(g: Graph, op: Op) -> KernelCall:
    fwd = lower(g, _forward(g, op)).params
    align, half = bool(fwd["align_corners"]), bool(fwd["half_pixel_centers"])
    rows = nearest_indices(int(fwd["input_h"]), int(fwd["output_h"]), align, half)
    cols = nearest_indices(int(fwd["input_w"]), int(fwd["output_w"]), align, half)
    names = ("batches", "input_h", "input_w", "channels", "output_h", "output_w")
    return KernelCall(
        "resize_nearest_neighbor_grad_input",
        {k: fwd[k] for k in names},
        _grad_io(op, Operand(data=rows), Operand(data=cols)),
    )
