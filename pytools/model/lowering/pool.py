"""Lowering of the int8 pooling ops: AVERAGE_POOL_2D, MAX_POOL_2D and MEAN.

Pooling follows TFLite's kernels/pooling.cc (padding from ComputePaddingHeightWidth, the
activation clamp from the output's quantization; no rescaling, so input and output must
share quantization). MEAN follows TFLite's reference int8 path, which (in the TFLite of
ai-edge-litert 2.x and in TFLite Micro alike) is reference_ops::QuantizedMeanOrSum for every
axis set and quantization: integer only, with 1/count folded into the multiplier.
"""

from __future__ import annotations

import math

from pytools.model.ir import Graph, ModelError, Op
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lowers
from pytools.model.lowering._checks import (
    constant_ints,
    expect_shape,
    fused_activation,
    int8_per_tensor,
    nonempty,
    operands,
    same_quantization,
    to_4d,
)
from pytools.model.quant import quantize_multiplier

# pooling.cc only DCHECKs that input and output scales agree to within this.
POOL_SCALE_TOLERANCE = 1.0e-6


def out_size_and_padding(op: Op, size: int, filter_size: int, stride: int, padding: str) -> tuple[int, int]:
    """TFLite ComputeOutSize + ComputePaddingWithOffset (dilation 1): the output extent and
    the padding before the input (the smaller half when the total is odd)."""
    if padding == "SAME":
        out = (size + stride - 1) // stride
    elif padding == "VALID":
        out = (size + stride - filter_size) // stride
    else:
        raise ModelError(f"{op.where()}: unknown padding {padding!r}")
    if out <= 0:
        raise ModelError(f"{op.where()}: a {filter_size}-wide window does not fit an input of {size}")
    total = max((out - 1) * stride + filter_size - size, 0)
    return out, total // 2


def _lower_pool(graph: Graph, op: Op, kernel: str) -> KernelCall:
    (x,), (out,) = operands(graph, op, 1)
    int8_per_tensor(op, x, "input")
    int8_per_tensor(op, out, "output")
    same_quantization(op, x, out, POOL_SCALE_TOLERANCE)
    nonempty(op, x, "input")
    if len(x.shape) != 4:
        raise ModelError(f"{op.where()}: input must be 4-D NHWC, got shape {list(x.shape)}")
    o = op.options
    try:
        fh, fw, sh, sw = (int(o[k]) for k in ("filter_h", "filter_w", "stride_h", "stride_w"))
        padding = o["padding"]
    except KeyError as e:
        raise ModelError(f"{op.where()}: missing option {e}") from None
    if min(fh, fw, sh, sw) <= 0:
        raise ModelError(f"{op.where()}: filter {fh}x{fw} and strides {sh}x{sw} must be positive")
    batches, in_h, in_w, channels = x.shape
    out_h, pad_h = out_size_and_padding(op, in_h, fh, sh, padding)
    out_w, pad_w = out_size_and_padding(op, in_w, fw, sw, padding)
    expect_shape(op, out, (batches, out_h, out_w, channels))
    act_min, act_max = fused_activation(op, out)
    params: dict[str, int | float] = {
        "batches": batches,
        "input_h": in_h,
        "input_w": in_w,
        "channels": channels,
        "output_h": out_h,
        "output_w": out_w,
        "filter_h": fh,
        "filter_w": fw,
        "stride_h": sh,
        "stride_w": sw,
        "pad_h": pad_h,
        "pad_w": pad_w,
        "act_min": act_min,
        "act_max": act_max,
    }
    return KernelCall(kernel, params, [Operand(tensor=x.index), Operand(tensor=out.index, is_output=True)])


@lowers("AVERAGE_POOL_2D")
def lower_avg_pool(graph: Graph, op: Op) -> KernelCall:
    return _lower_pool(graph, op, "avg_pool_s8")


@lowers("MAX_POOL_2D")
def lower_max_pool(graph: Graph, op: Op) -> KernelCall:
    return _lower_pool(graph, op, "max_pool_s8")


def mean_multiplier(op: Op, input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """reduce.cc PrepareMeanOrSum + QuantizedMeanOrSum: QuantizeMultiplier of
    input_scale / output_scale, then 1/count folded in: the multiplier is shifted left by
    floor(log2(count)) (at most 32, and at most 31 + shift so that the final shift stays
    >= -31) and divided by count, truncating."""
    multiplier, shift = quantize_multiplier(input_scale / output_scale)
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    if fold < 0:
        raise ModelError(
            f"{op.where()}: input scale {input_scale} / output scale {output_scale} is too small "
            "for TFLite's MEAN arithmetic"
        )
    return (multiplier << fold) // count, shift - fold


def merge_reduce_dims(shape: list[int], reduce: list[int]) -> tuple[list[int], list[int]]:
    """The same mean on at most 4 dimensions where the input has more: adjacent dimensions
    that are both kept or both averaged merge into one (row-major order is unchanged, and so
    are the sums). Ranks up to 4 stay as they are, so the spatial mean of NHWC keeps its
    optimized path (mean_s8_dsp.c)."""
    if len(shape) <= 4:
        return shape, reduce
    dims, flags = [shape[0]], [reduce[0]]
    for d, r in zip(shape[1:], reduce[1:], strict=True):
        if r == flags[-1]:
            dims[-1] *= d
        else:
            dims.append(d)
            flags.append(r)
    return dims, flags


@lowers("MEAN")
def lower_mean(graph: Graph, op: Op) -> KernelCall:
    (x,), (out,) = operands(graph, op, 1)
    in_scale, in_zp = int8_per_tensor(op, x, "input")
    out_scale, out_zp = int8_per_tensor(op, out, "output")
    nonempty(op, x, "input")
    rank = len(x.shape)
    if rank == 0:
        raise ModelError(f"{op.where()}: the input is a scalar")
    axes: list[int] = []
    for a in constant_ints(graph, op, 1, "axis"):
        if not -rank <= a < rank:
            raise ModelError(f"{op.where()}: axis {a} is out of range for rank {rank}")
        if a % rank not in axes:  # TFLite ResolveAxis: negative axes wrap, duplicates drop
            axes.append(a % rank)
    keep_dims = bool(op.options.get("keep_dims", False))
    if keep_dims:
        out_shape = [1 if k in axes else d for k, d in enumerate(x.shape)]
    else:
        out_shape = [d for k, d in enumerate(x.shape) if k not in axes]
    expect_shape(op, out, out_shape)

    dims, flags = merge_reduce_dims(list(x.shape), [1 if k in axes else 0 for k in range(rank)])
    dims = to_4d(op, dims, "the input (after merging adjacent kept or averaged dimensions)")
    reduce = [0] * (4 - len(flags)) + flags
    count = math.prod(d for d, r in zip(dims, reduce, strict=True) if r)
    multiplier, shift = mean_multiplier(op, in_scale, out_scale, count)
    params: dict[str, int | float] = {f"dim{k}": dims[k] for k in range(4)}
    params |= {f"reduce{k}": reduce[k] for k in range(4)}
    params |= {
        "count": count,
        "input_zero_point": in_zp,
        "output_zero_point": out_zp,
        "multiplier": multiplier,
        "shift": shift,
    }
    return KernelCall("mean_s8", params, [Operand(tensor=x.index), Operand(tensor=out.index, is_output=True)])
