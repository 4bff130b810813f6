"""Lowering of STRIDED_SLICE and SLICE (issue 12): both become the strided_slice kernel,
given per dimension the first input index and the step (SLICE's step is 1).

The index arithmetic is TFLite's (kernels/internal/strided_slice_logic.h: StartForAxis,
StopForAxis; kernels/strided_slice.cc and slice.cc for the output shapes). Masks handled:
begin_mask, end_mask and shrink_axis_mask. ellipsis_mask and new_axis_mask are refused, as
TFLite Micro refuses them (a converter folds them away for fixed shapes).
"""

from __future__ import annotations

from pytools.model.ir import Graph, ModelError, Op
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lowers
from pytools.model.lowering._checks import constant_ints, expect_shape, operands
from pytools.model.lowering.movement import element_size

SLICE_RANK = 5  # TFLite's limit for STRIDED_SLICE and SLICE
_LOWEST, _HIGHEST = -(2**31), 2**31 - 1


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(v, hi))


def strided_axis(
    size: int, begin: int, end: int, stride: int, masks: tuple[bool, bool, bool]
) -> tuple[int, int]:
    """(first index, count) along one axis: TFLite's StartForAxis / StopForAxis and its
    output extent ceil((stop - start) / stride), at least 0. masks: begin, end, shrink."""
    begin_mask, end_mask, shrink = masks
    start = (_LOWEST if stride > 0 else _HIGHEST) if begin_mask else begin
    if start < 0:
        start += size
    start = _clamp(start, 0, size) if stride > 0 else _clamp(start, -1, size - 1)
    if shrink:
        return start, 1
    stop = (_HIGHEST if stride > 0 else _LOWEST) if end_mask else end
    if stop < 0:
        stop += size
    stop = _clamp(stop, 0, size) if stride > 0 else _clamp(stop, -1, size - 1)
    count = max(0, -((start - stop) // stride))  # ceil((stop - start) / stride), exactly
    return start, count


def _call(
    op: Op, x_index: int, out_index: int, elem: int, in_shape: list[int], axes: list[tuple[int, int, int]]
) -> KernelCall:
    """axes: (start, count, step) per input dimension; padded to 5-D on the left."""
    pad = SLICE_RANK - len(in_shape)
    dims = [1] * pad + list(in_shape)
    full = [(0, 1, 1)] * pad + axes
    params: dict[str, int | float] = {"elem_size": elem}
    params |= {f"in_dim{k}": dims[k] for k in range(SLICE_RANK)}
    params |= {f"out_dim{k}": full[k][1] for k in range(SLICE_RANK)}
    params |= {f"start{k}": full[k][0] for k in range(SLICE_RANK)}
    params |= {f"step{k}": full[k][2] for k in range(SLICE_RANK)}
    return KernelCall(
        "strided_slice", params, [Operand(tensor=x_index), Operand(tensor=out_index, is_output=True)]
    )


def _rank(op: Op, shape: tuple[int, ...]) -> int:
    rank = len(shape)
    if not 1 <= rank <= SLICE_RANK:
        raise ModelError(f"{op.where()}: input has rank {rank}; {op.kind} supports 1 to {SLICE_RANK}")
    return rank


@lowers("STRIDED_SLICE")
def lower_strided_slice(graph: Graph, op: Op) -> KernelCall:
    (x,), (out,) = operands(graph, op, 1)
    elem = element_size(op, x, out)
    rank = _rank(op, x.shape)
    o = op.options
    for mask in ("ellipsis_mask", "new_axis_mask"):
        if int(o.get(mask, 0)):
            raise ModelError(
                f"{op.where()}: {mask} {o[mask]} is not supported (nor by TFLite Micro): convert with "
                "fixed shapes so that the converter resolves it"
            )
    if o.get("offset", False):
        raise ModelError(f"{op.where()}: the offset option (end relative to begin) is not supported")
    begin = constant_ints(graph, op, 1, "begin")
    end = constant_ints(graph, op, 2, "end")
    strides = constant_ints(graph, op, 3, "strides")
    n = len(begin)
    if not (len(end) == len(strides) == n <= rank):
        raise ModelError(
            f"{op.where()}: begin, end and strides have {n}, {len(end)} and {len(strides)} values "
            f"for an input of rank {rank}"
        )
    if 0 in strides:
        raise ModelError(f"{op.where()}: strides {strides} must be non-zero")
    bm, em, sm = (int(o.get(k, 0)) for k in ("begin_mask", "end_mask", "shrink_axis_mask"))
    axes, out_shape = [], []
    for k, size in enumerate(x.shape):
        if k >= n:  # TFLite: dimensions past the given indices are taken whole
            axes.append((0, size, 1))
            out_shape.append(size)
            continue
        shrink = bool(sm >> k & 1)
        start, count = strided_axis(
            size, begin[k], end[k], strides[k], (bool(bm >> k & 1), bool(em >> k & 1), shrink)
        )
        if shrink and not 0 <= start < size:
            raise ModelError(f"{op.where()}: shrunk axis {k} takes index {begin[k]}, outside its size {size}")
        axes.append((start, count, strides[k]))
        if not shrink:
            out_shape.append(count)
    expect_shape(op, out, out_shape)
    if 0 in out_shape:
        raise ModelError(
            f"{op.where()}: the slice is empty (output shape {out_shape}); empty tensors are not supported"
        )
    return _call(op, x.index, out.index, elem, list(x.shape), axes)


@lowers("SLICE")
def lower_slice(graph: Graph, op: Op) -> KernelCall:
    (x,), (out,) = operands(graph, op, 1)
    elem = element_size(op, x, out)
    rank = _rank(op, x.shape)
    begin = constant_ints(graph, op, 1, "begin")
    size = constant_ints(graph, op, 2, "size")
    if len(begin) != rank or len(size) != rank:
        raise ModelError(f"{op.where()}: begin {begin} and size {size} must have {rank} values each")
    axes = []
    for k, dim in enumerate(x.shape):
        n = dim - begin[k] if size[k] == -1 else size[k]  # TFLite: size -1 means "to the end"
        if begin[k] < 0 or n < 0 or begin[k] + n > dim:
            raise ModelError(
                f"{op.where()}: begin {begin} and size {size} do not fit the input {list(x.shape)}"
            )
        axes.append((begin[k], n, 1))
    expect_shape(op, out, [n for _, n, _ in axes])
    return _call(op, x.index, out.index, elem, list(x.shape), axes)
