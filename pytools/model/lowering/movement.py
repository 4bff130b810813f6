"""Lowering of the operators that move data without computing (issue 12): TRANSPOSE,
CONCATENATION, SQUEEZE, EXPAND_DIMS, RESIZE_NEAREST_NEIGHBOR, DEPTH_TO_SPACE and
SPACE_TO_DEPTH. (STRIDED_SLICE and SLICE: slicing.py; PAD and RESHAPE: shape.py.)

Each follows TFLite's reference kernel (kernels/transpose.cc, concatenation.cc, ...): the
checks its Prepare makes and the output shape it computes. The kernels copy elements of any
size, so a model's float32 or int32 tensors move too. They copy the quanta as they are, as
TFLite's int8 kernels do: TRANSPOSE and the others never look at quantization, so an output
quantized differently from its input reinterprets the values in TFLite and here alike;
CONCATENATION is the exception, where TFLite and TFLite Micro refuse int8 inputs quantized
unlike the output, and so do we (the converter puts a requantizing QUANTIZE before it).
"""

from __future__ import annotations

import math

import numpy as np

from pytools.model.ir import Graph, ModelError, Op, Tensor
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lowers
from pytools.model.lowering._checks import (
    INT32_MAX,
    constant_ints,
    expect_shape,
    nonempty,
    operands,
    per_tensor,
)

TRANSPOSE_RANK = 6  # TFLite's and TFLite Micro's limit for TRANSPOSE
CONCATENATION_MAX_INPUTS = 14  # the runtime passes 16 operands: run sizes, inputs, output


def element_size(op: Op, x: Tensor, out: Tensor) -> int:
    """Bytes per element of a moved tensor; input and output must share the type."""
    if x.dtype != out.dtype:
        raise ModelError(
            f"{op.where()}: input '{x.name}' is {x.dtype} but output '{out.name}' is {out.dtype}"
        )
    nonempty(op, x, "input")
    nonempty(op, out, "output")
    return int(np.dtype(x.dtype).itemsize)


def _single(graph: Graph, op: Op) -> tuple[Tensor, Tensor, int]:
    (x,), (out,) = operands(graph, op, 1)
    return x, out, element_size(op, x, out)


def _call(kernel: str, params: dict[str, int | float], x: Tensor, out: Tensor) -> KernelCall:
    return KernelCall(kernel, params, [Operand(tensor=x.index), Operand(tensor=out.index, is_output=True)])


# ---- TRANSPOSE ------------------------------------------------------------------------


def simplify_transpose(shape: list[int], perm: list[int]) -> tuple[list[int], list[int]]:
    """The same data movement on fewer dimensions: size-1 dimensions dropped, and input
    dimensions that stay adjacent and in order in the output merged into one. The kernel's
    innermost run is then as long as it can be (one memcpy when the last dimension stays
    last)."""
    live = [k for k in range(len(shape)) if shape[k] != 1]
    pos = {k: i for i, k in enumerate(live)}
    groups: list[list[int]] = []  # runs of live input dimensions, in output order
    for k in perm:
        if shape[k] == 1:
            continue
        if groups and pos[groups[-1][-1]] + 1 == pos[k]:
            groups[-1].append(k)
        else:
            groups.append([k])
    in_order = sorted(groups, key=lambda g: g[0])
    dims = [math.prod(shape[k] for k in g) for g in in_order]
    return dims, [in_order.index(g) for g in groups]


@lowers("TRANSPOSE")
def lower_transpose(graph: Graph, op: Op) -> KernelCall:
    x, out, elem = _single(graph, op)
    rank = len(x.shape)
    if rank > TRANSPOSE_RANK:
        raise ModelError(f"{op.where()}: input has rank {rank}; TRANSPOSE supports at most {TRANSPOSE_RANK}")
    perm = constant_ints(graph, op, 1, "permutation")
    if sorted(perm) != list(range(rank)):
        raise ModelError(f"{op.where()}: {perm} is not a permutation of the input's {rank} dimensions")
    expect_shape(op, out, [x.shape[p] for p in perm])
    dims, small_perm = simplify_transpose(list(x.shape), perm)
    pad = TRANSPOSE_RANK - len(dims)
    dims6 = [1] * pad + dims
    perm6 = list(range(pad)) + [p + pad for p in small_perm]
    params: dict[str, int | float] = {"elem_size": elem}
    params |= {f"in_dim{k}": dims6[k] for k in range(TRANSPOSE_RANK)}
    params |= {f"perm{k}": perm6[k] for k in range(TRANSPOSE_RANK)}
    return _call("transpose", params, x, out)


# ---- CONCATENATION --------------------------------------------------------------------


@lowers("CONCATENATION")
def lower_concatenation(graph: Graph, op: Op) -> KernelCall:
    ins = graph.op_inputs(op)
    outs = graph.op_outputs(op)
    if not ins or any(t is None for t in ins) or len(outs) != 1:
        raise ModelError(f"{op.where()}: expected inputs and 1 output, got {len(ins)} and {len(outs)}")
    xs = [t for t in ins if t is not None]
    out = outs[0]
    if len(xs) > CONCATENATION_MAX_INPUTS:
        raise ModelError(
            f"{op.where()}: {len(xs)} inputs; the runtime joins at most {CONCATENATION_MAX_INPUTS} "
            "in one operator (split it into a chain of CONCATENATIONs)"
        )
    if op.options.get("activation", "NONE") != "NONE":
        raise ModelError(
            f"{op.where()}: fused activation {op.options['activation']} is not supported on CONCATENATION "
            "(TFLite's int8 kernel has none)"
        )
    rank = len(out.shape)
    axis = int(op.options.get("axis", 0))
    if not -rank <= axis < rank:
        raise ModelError(f"{op.where()}: axis {axis} is out of range for rank {rank}")
    axis %= rank
    elem = 0
    for k, x in enumerate(xs):
        elem = element_size(op, x, out)
        if len(x.shape) != rank or any(
            d != e for i, (d, e) in enumerate(zip(x.shape, out.shape, strict=True)) if i != axis
        ):
            raise ModelError(
                f"{op.where()}: input {k} '{x.name}' of shape {list(x.shape)} does not fit the output "
                f"{list(out.shape)} along axis {axis}"
            )
        if out.dtype == "int8":
            (si, zi), (so, zo) = per_tensor(op, x, f"input {k}"), per_tensor(op, out, "output")
            if si != so or zi != zo:
                raise ModelError(
                    f"{op.where()}: input {k} '{x.name}' (scale {si}, zero point {zi}) is quantized unlike "
                    f"the output '{out.name}' (scale {so}, zero point {zo}); TFLite's int8 CONCATENATION "
                    "does not rescale and refuses it: requantize the input first (QUANTIZE)"
                )
    out_shape = list(out.shape)
    out_shape[axis] = sum(x.shape[axis] for x in xs)
    expect_shape(op, out, out_shape)
    outer = math.prod(out.shape[:axis])
    runs = [math.prod(x.shape[axis:]) * elem for x in xs]
    if max(runs) > INT32_MAX:
        raise ModelError(f"{op.where()}: an input is too large")
    return KernelCall(
        "concatenation",
        {"num_inputs": len(xs), "outer": outer},
        [
            Operand(data=np.array(runs, dtype=np.int32)),
            *(Operand(tensor=x.index) for x in xs),
            Operand(tensor=out.index, is_output=True),
        ],
    )


# ---- SQUEEZE / EXPAND_DIMS: RESHAPEs ---------------------------------------------------


def _as_reshape(op: Op, x: Tensor, out: Tensor, elem: int, shape: list[int]) -> KernelCall:
    """A shape change of unchanged row-major data: the reshape kernel, which the compiler
    skips by aliasing the output to the input (pytools/model/compiler.py)."""
    expect_shape(op, out, shape)
    if x.nbytes > INT32_MAX:
        raise ModelError(f"{op.where()}: input '{x.name}' is too large")
    return _call("reshape", {"nbytes": math.prod(x.shape) * elem}, x, out)


@lowers("SQUEEZE")
def lower_squeeze(graph: Graph, op: Op) -> KernelCall:
    x, out, elem = _single(graph, op)
    rank = len(x.shape)
    dims = [int(d) for d in op.options.get("squeeze_dims", [])]
    if not dims:  # TFLite: no squeeze_dims means every dimension of size 1
        drop = {k for k, d in enumerate(x.shape) if d == 1}
    else:
        drop = set()
        for d in dims:
            if not -rank <= d < rank:
                raise ModelError(f"{op.where()}: squeeze dimension {d} is out of range for rank {rank}")
            if x.shape[d % rank] != 1:
                raise ModelError(
                    f"{op.where()}: dimension {d} of input shape {list(x.shape)} is not 1: cannot squeeze it"
                )
            drop.add(d % rank)
    return _as_reshape(op, x, out, elem, [d for k, d in enumerate(x.shape) if k not in drop])


@lowers("EXPAND_DIMS")
def lower_expand_dims(graph: Graph, op: Op) -> KernelCall:
    x, out, elem = _single(graph, op)
    rank = len(x.shape)
    axes = constant_ints(graph, op, 1, "axis")
    if len(axes) != 1 or not -rank - 1 <= axes[0] <= rank:
        raise ModelError(f"{op.where()}: axis {axes} must be one value in [{-rank - 1}, {rank}]")
    axis = axes[0] + rank + 1 if axes[0] < 0 else axes[0]
    return _as_reshape(op, x, out, elem, [*x.shape[:axis], 1, *x.shape[axis:]])


# ---- RESIZE_NEAREST_NEIGHBOR, DEPTH_TO_SPACE, SPACE_TO_DEPTH ----------------------------


def _nhwc(op: Op, x: Tensor) -> tuple[int, int, int, int]:
    if len(x.shape) != 4:
        raise ModelError(f"{op.where()}: input must be 4-D NHWC, got shape {list(x.shape)}")
    b, h, w, c = (int(d) for d in x.shape)
    return b, h, w, c


@lowers("RESIZE_NEAREST_NEIGHBOR")
def lower_resize_nearest_neighbor(graph: Graph, op: Op) -> KernelCall:
    x, out, elem = _single(graph, op)
    b, h, w, c = _nhwc(op, x)
    size = constant_ints(graph, op, 1, "size")
    if len(size) != 2 or min(size) <= 0:
        raise ModelError(f"{op.where()}: size {size} must be two positive values [height, width]")
    expect_shape(op, out, [b, size[0], size[1], c])
    params: dict[str, int | float] = {
        "elem_size": elem,
        "batches": b,
        "input_h": h,
        "input_w": w,
        "channels": c,
        "output_h": size[0],
        "output_w": size[1],
        "align_corners": int(bool(op.options.get("align_corners", False))),
        "half_pixel_centers": int(bool(op.options.get("half_pixel_centers", False))),
    }
    return _call("resize_nearest_neighbor", params, x, out)


def _block(op: Op) -> int:
    bs = int(op.options.get("block_size", 0))
    if bs < 1:
        raise ModelError(f"{op.where()}: block_size {bs} must be at least 1")
    return bs


@lowers("DEPTH_TO_SPACE")
def lower_depth_to_space(graph: Graph, op: Op) -> KernelCall:
    x, out, elem = _single(graph, op)
    b, h, w, c = _nhwc(op, x)
    bs = _block(op)
    if c % (bs * bs):
        raise ModelError(f"{op.where()}: {c} input channels are not a multiple of block_size^2 = {bs * bs}")
    expect_shape(op, out, [b, h * bs, w * bs, c // (bs * bs)])
    params = {"elem_size": elem, "batches": b, "input_h": h, "input_w": w, "input_c": c, "block_size": bs}
    return _call("depth_to_space", params, x, out)


@lowers("SPACE_TO_DEPTH")
def lower_space_to_depth(graph: Graph, op: Op) -> KernelCall:
    x, out, elem = _single(graph, op)
    b, h, w, c = _nhwc(op, x)
    bs = _block(op)
    if h % bs or w % bs:
        raise ModelError(f"{op.where()}: input {h}x{w} is not a multiple of block_size {bs}")
    expect_shape(op, out, [b, h // bs, w // bs, c * bs * bs])
    params = {"elem_size": elem, "batches": b, "input_h": h, "input_w": w, "input_c": c, "block_size": bs}
    return _call("space_to_depth", params, x, out)
