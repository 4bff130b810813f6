"""Lowering of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED to the int8 kernels
(firmware/kernels/conv2d_s8, depthwise_conv2d_s8, fully_connected_s8).

The parameters are what TFLite's Prepare computes (kernels/conv.cc, depthwise_conv.cc,
fully_connected.cc, kernel_util.cc), with the same float/double promotions, so the C kernels
see the very numbers TFLite's reference kernels use:
  - per-channel multipliers: QuantizeMultiplier(double(s_in) * double(s_w[c]) / double(s_out))
    (PopulateConvolutionQuantizationParams), also for per-tensor conv filters;
  - FULLY_CONNECTED is the exception: TFLite's reference kernel requantizes in double,
    round(acc * (double(s_in) * double(s_w[c]) / double(s_out))), so its kernel takes the
    float scales themselves (weights scales as a float32 operand) and evaluates that;
  - padding: ComputePaddingHeightWidth (the top/left half of the total padding);
  - activation range: CalculateActivationRangeQuantized.

Operands, in the kernels' order: input, filter/weights, bias, multipliers, shifts (conv and
depthwise) or weights scales (fully connected), trained filter/weights, trained bias, output.
Multipliers/shifts/scales are derived constants: one per output channel when the filter is
quantized per channel, else a single one (params.per_channel says which).

A missing bias (an omitted optional input, -1) is passed as an empty int32 array with
params.has_bias = 0: the kernel never reads it, so it may be NULL (the host runner turns an
empty array into NULL). TFLite itself insists on a bias for int8 CONV_2D and
DEPTHWISE_CONV_2D; a bias-less layer computes what TFLite computes with a zero bias.

The trained filter and bias are the RAM copies of the rows a sparse update trains (the
kernels' headers: params train_rows / train_bias_rows; output channels below them read the
RAM copy), or, for CONV_2D, of its first input channels (train_cols, conv2d_train.def).
Inference lowers every layer with train_rows = train_cols = train_bias_rows = 0 and both
operands empty (`_training`); a training plan replaces them with its RAM tensors.
"""

from __future__ import annotations

import numpy as np

from pytools.model.ir import ACTIVATIONS, Graph, ModelError, Op, Quant, Tensor
from pytools.model.kernels import KernelCall, Operand, op_defs
from pytools.model.lowering import lowers
from pytools.model.quant import activation_range, f32, quantize_multiplier

# MultiplyByQuantizedMultiplier shifts left by at most 31 bits in int32; TFLite asserts
# shift <= 30 (an effective scale >= 2^30 is never a real model).
_MAX_SHIFT = 30


def _fail(op: Op, msg: str) -> ModelError:
    return ModelError(f"{op.where()}: {msg}")


def _int8(op: Op, t: Tensor | None, role: str) -> Tensor:
    if t is None:
        raise _fail(op, f"has no {role}")
    if t.dtype != "int8":
        raise _fail(op, f"{role} '{t.name}' is {t.dtype}; only int8 is supported")
    if t.quant is None:
        raise _fail(op, f"{role} '{t.name}' is not quantized")
    return t


def _per_tensor(op: Op, t: Tensor, role: str) -> tuple[float, int]:
    """(scale as TFLite's float, zero point) of an activation, which must be per tensor."""
    q = t.quant
    assert q is not None
    if q.per_channel:
        raise _fail(op, f"{role} '{t.name}' is quantized per channel; only per tensor is supported")
    scale, zp = f32(q.scale[0]), int(q.zero_point[0])
    if not scale > 0:
        raise _fail(op, f"{role} '{t.name}' has scale {scale}; it must be positive")
    if not -128 <= zp <= 127:
        raise _fail(op, f"{role} '{t.name}' has zero point {zp}, outside int8")
    return scale, zp


def _filter_scales(op: Op, t: Tensor, channels: int, axis: int, role: str) -> tuple[list[float], bool]:
    """The filter's scales (as floats) and whether they are per channel; zero points must be 0,
    as TFLite's int8 per-channel kernels assume (they ignore the filter zero point)."""
    q: Quant = t.quant  # type: ignore[assignment]
    if q.per_channel:
        # TFLite Micro's checks (the importer leaves them to the kernel that reads the scales):
        # one scale per element of the quantized dimension, and that is the channel axis.
        if q.scale.size != channels:
            raise _fail(op, f"{role} '{t.name}' has {q.scale.size} scales for {channels} channels")
        if not 0 <= q.axis < len(t.shape) or t.shape[q.axis] != channels:
            raise _fail(
                op,
                f"{role} '{t.name}' of shape {list(t.shape)} is quantized along dimension {q.axis}; "
                f"its {channels} channels are dimension {axis}",
            )
    if np.any(q.zero_point != 0):
        raise _fail(op, f"{role} '{t.name}' has a non-zero zero point; int8 filters must be symmetric")
    scales = [f32(s) for s in q.scale]
    if not all(s > 0 for s in scales):
        raise _fail(op, f"{role} '{t.name}' has a non-positive scale")
    return scales, q.per_channel


def _bias(op: Op, t: Tensor | None, channels: int) -> tuple[Operand, int]:
    """(bias operand, has_bias)."""
    if t is None:
        return Operand(data=np.zeros(0, dtype=np.int32)), 0
    if t.dtype != "int32":
        raise _fail(op, f"bias '{t.name}' is {t.dtype}; int8 kernels take an int32 bias")
    if int(np.prod(t.shape, dtype=np.int64)) != channels:
        raise _fail(op, f"bias '{t.name}' has shape {t.shape}, expected {channels} values")
    if t.quant is not None and np.any(t.quant.zero_point != 0):
        raise _fail(op, f"bias '{t.name}' has a non-zero zero point")
    return Operand(tensor=t.index), 1


def _training(op: Op, channels: int) -> tuple[dict[str, int], list[Operand]]:
    """Parameters and operands (trained filter, trained bias) of the layer: its RAM copies
    in a training step (options from pytools/train/autodiff.py); for a layer nobody trains,
    zero rows and empty operands, so the kernel reads everything from flash."""
    w, b = op.options.get("trained_filter", -1), op.options.get("trained_bias", -1)
    params = {
        "train_rows": int(op.options.get("train_rows", 0)) if w >= 0 else 0,
        "train_bias_rows": channels if b >= 0 else 0,
    }
    if op.kind == "CONV_2D":  # only CONV_2D trains input-channel slices (conv2d_train.def)
        params["train_cols"] = int(op.options.get("train_cols", 0)) if w >= 0 else 0
    return params, [
        Operand(tensor=w) if w >= 0 else Operand(data=np.zeros(0, dtype=np.int8)),
        Operand(tensor=b) if b >= 0 else Operand(data=np.zeros(0, dtype=np.int32)),
    ]


def _multipliers(op: Op, real: list[float]) -> tuple[Operand, Operand]:
    """QuantizeMultiplier of each effective scale, as int32 operands."""
    mults, shifts = [], []
    for r in real:
        m, s = quantize_multiplier(r)
        if s > _MAX_SHIFT:
            raise _fail(op, f"effective output scale {r:g} is too large for int8 requantization")
        mults.append(m)
        shifts.append(s)
    return Operand(data=np.array(mults, dtype=np.int32)), Operand(data=np.array(shifts, dtype=np.int32))


def _activation(op: Op, out: Tensor) -> tuple[int, int]:
    act = op.options.get("activation", "NONE")
    if act not in ACTIVATIONS:
        raise _fail(op, f"fused activation {act} is not supported")
    return activation_range(act, out.quant)  # type: ignore[arg-type]


def _out_size(padding: str, size: int, filt: int, stride: int, dilation: int) -> int:
    """TFLite ComputeOutSize."""
    effective = (filt - 1) * dilation + 1
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size + stride - effective) // stride


def _pad_before(size: int, filt: int, stride: int, dilation: int, out: int) -> int:
    """TFLite ComputePaddingWithOffset: the padding before the first row/column (the odd
    extra row/column of SAME padding goes after, where the kernel's bounds check drops it)."""
    effective = (filt - 1) * dilation + 1
    return max(0, (out - 1) * stride + effective - size) // 2


def _window(op: Op, inp: Tensor, out: Tensor, fh: int, fw: int, out_c: int) -> dict[str, int]:
    """Strides, dilations, output size and padding of a 2-D window op, checked against the
    output tensor's shape."""
    o = op.options
    padding = o.get("padding")
    if padding not in ("SAME", "VALID"):
        raise _fail(op, f"padding {padding!r} is not supported (SAME or VALID)")
    sh, sw = int(o.get("stride_h", 1)), int(o.get("stride_w", 1))
    dh, dw = int(o.get("dilation_h", 1)), int(o.get("dilation_w", 1))
    if min(sh, sw, dh, dw) < 1:
        raise _fail(op, f"strides ({sh}, {sw}) and dilations ({dh}, {dw}) must be >= 1")
    if len(inp.shape) != 4:
        raise _fail(op, f"input '{inp.name}' has shape {inp.shape}; expected NHWC")
    n, h, w, _ = inp.shape
    explicit = o.get("patch_pad", o.get("explicit_pad"))
    if explicit is not None:
        return _explicit_window(op, inp, out, fh, fw, (sh, sw, dh, dw), explicit)
    oh, ow = _out_size(padding, h, fh, sh, dh), _out_size(padding, w, fw, sw, dw)
    if oh < 1 or ow < 1:
        raise _fail(op, f"a {fh}x{fw} filter (dilation {dh}x{dw}) does not fit a {h}x{w} input")
    if tuple(out.shape) != (n, oh, ow, out_c):
        raise _fail(op, f"output '{out.name}' has shape {out.shape}, expected {(n, oh, ow, out_c)}")
    return {
        "batches": n,
        "input_h": h,
        "input_w": w,
        "filter_h": fh,
        "filter_w": fw,
        "output_h": oh,
        "output_w": ow,
        "stride_h": sh,
        "stride_w": sw,
        "dilation_h": dh,
        "dilation_w": dw,
        "pad_h": _pad_before(h, fh, sh, dh, oh),
        "pad_w": _pad_before(w, fw, sw, dw, ow),
    }


def _explicit_window(
    op: Op, inp: Tensor, out: Tensor, fh: int, fw: int, steps: tuple[int, int, int, int], pad: tuple[int, int]
) -> dict[str, int]:
    """A window with an explicit padding before the first row and column, the output's size
    taken from the output tensor (the rows after the input are positions the kernel's bounds
    check drops, so the padding after is whatever the output needs). Two users: one patch of
    a layer (option "patch_pad", pytools/model/lowering/patch.py: the input and output are
    the patch's buffers, the padding what the patch needs) and a PAD folded into the layer
    (option "explicit_pad", pytools/model/lowering/fold.py). It is the same implicit padding
    TFLite applies at the tensor's edge (positions outside the input count as its zero
    point), so the kernel computes exactly the full layer's values."""
    sh, sw, dh, dw = steps
    pad_h, pad_w = int(pad[0]), int(pad[1])
    n, h, w, _ = inp.shape
    _, oh, ow, _ = out.shape
    if pad_h < 0 or pad_w < 0 or n != out.shape[0]:
        raise _fail(op, f"explicit padding ({pad_h}, {pad_w}) or batch ({n}) is not valid")
    # Every output position must read at least one input position of the (patch) buffer.
    if (oh - 1) * sh - pad_h >= h or (ow - 1) * sw - pad_w >= w:
        raise _fail(op, f"a {oh}x{ow} output reads beyond its {h}x{w} input")
    return {
        "batches": n,
        "input_h": h,
        "input_w": w,
        "filter_h": fh,
        "filter_w": fw,
        "output_h": oh,
        "output_w": ow,
        "stride_h": sh,
        "stride_w": sw,
        "dilation_h": dh,
        "dilation_w": dw,
        "pad_h": pad_h,
        "pad_w": pad_w,
    }


def _io(graph: Graph, op: Op) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    ins = graph.op_inputs(op)
    if len(ins) not in (2, 3) or len(op.outputs) != 1:
        raise _fail(op, f"expects 2 or 3 inputs and 1 output, has {len(ins)} and {len(op.outputs)}")
    inp = _int8(op, ins[0], "input")
    filt = _int8(op, ins[1], "filter")
    bias = ins[2] if len(ins) == 3 else None
    out = _int8(op, graph.op_outputs(op)[0], "output")
    return inp, filt, bias, out


@lowers("CONV_2D")
def lower_conv2d(graph: Graph, op: Op) -> KernelCall:
    inp, filt, bias_t, out = _io(graph, op)
    s_in, zp_in = _per_tensor(op, inp, "input")
    s_out, zp_out = _per_tensor(op, out, "output")
    if len(filt.shape) != 4:
        raise _fail(op, f"filter '{filt.name}' has shape {filt.shape}; expected [out_c, h, w, in_c]")
    out_c, fh, fw, filt_c = filt.shape
    in_c = inp.shape[-1]
    if filt_c != in_c:
        raise _fail(
            op, f"grouped convolution ({in_c} input channels, filter depth {filt_c}) is not supported"
        )
    shape = {"input_c": in_c, "output_c": out_c}
    quant = (s_in, zp_in, s_out, zp_out)
    return _conv_call(op, "CONV_2D", (inp, filt, bias_t, out), (fh, fw, out_c), 0, shape, quant)


@lowers("DEPTHWISE_CONV_2D")
def lower_depthwise_conv2d(graph: Graph, op: Op) -> KernelCall:
    inp, filt, bias_t, out = _io(graph, op)
    s_in, zp_in = _per_tensor(op, inp, "input")
    s_out, zp_out = _per_tensor(op, out, "output")
    if len(filt.shape) != 4 or filt.shape[0] != 1:
        raise _fail(op, f"filter '{filt.name}' has shape {filt.shape}; expected [1, h, w, out_c]")
    _, fh, fw, out_c = filt.shape
    in_c = inp.shape[-1]
    if in_c < 1 or out_c % in_c:
        raise _fail(op, f"{out_c} output channels are not a multiple of {in_c} input channels")
    multiplier = out_c // in_c
    declared = int(op.options.get("depth_multiplier", multiplier))
    if declared not in (0, multiplier):
        raise _fail(op, f"depth_multiplier {declared} contradicts the shapes ({in_c} -> {out_c} channels)")
    shape = {"input_c": in_c, "depth_multiplier": multiplier}
    quant = (s_in, zp_in, s_out, zp_out)
    call = _conv_call(op, "DEPTHWISE_CONV_2D", (inp, filt, bias_t, out), (fh, fw, out_c), 3, shape, quant)
    band_rows = int(op.options.get(IN_PLACE_OPTION, 0))
    if band_rows:  # the in-place kernel, which the compiler chose (pytools/model/inplace.py)
        kernel = op_defs()["DEPTHWISE_CONV_2D_INPLACE"].kernel
        return KernelCall(kernel, {**call.params, "band_rows": band_rows}, call.operands)
    return call


# A DEPTHWISE_CONV_2D option: output rows per band of the in-place kernel
# (depthwise_conv2d_s8_inplace), set by pytools/model/inplace.py where it shrinks the arena.
IN_PLACE_OPTION = "in_place_band_rows"


def _conv_call(
    op: Op,
    kind: str,
    io: tuple[Tensor, Tensor, Tensor | None, Tensor],
    window_shape: tuple[int, int, int],
    channel_axis: int,
    shape: dict[str, int],
    quant: tuple[float, int, float, int],
) -> KernelCall:
    """The kernel call of a convolution or a depthwise convolution: they differ only in their
    shape parameters and in the filter axis that holds the output channels.
    io: (input, filter, bias, output); quant: (s_in, zp_in, s_out, zp_out)."""
    inp, filt, bias_t, out = io
    s_in, zp_in, s_out, zp_out = quant
    fh, fw, out_c = window_shape
    window = _window(op, inp, out, fh, fw, out_c)
    scales, per_channel = _filter_scales(op, filt, out_c, channel_axis, "filter")
    bias, has_bias = _bias(op, bias_t, out_c)
    mults, shifts = _multipliers(op, [s_in * s / s_out for s in scales])
    act_min, act_max = _activation(op, out)
    train_params, trained = _training(op, out_c)
    params = {
        **window,
        **shape,
        "input_offset": -zp_in,
        "output_offset": zp_out,
        "act_min": act_min,
        "act_max": act_max,
        "has_bias": has_bias,
        "per_channel": int(per_channel),
        **train_params,
    }
    return KernelCall(
        op_defs()[kind].kernel,
        params,
        [
            Operand(tensor=inp.index),
            Operand(tensor=filt.index),
            bias,
            mults,
            shifts,
            *trained,
            Operand(tensor=out.index, is_output=True),
        ],
    )


@lowers("FULLY_CONNECTED")
def lower_fully_connected(graph: Graph, op: Op) -> KernelCall:
    inp, weights, bias_t, out = _io(graph, op)
    s_in, zp_in = _per_tensor(op, inp, "input")
    s_out, zp_out = _per_tensor(op, out, "output")
    if len(weights.shape) != 2:
        raise _fail(op, f"weights '{weights.name}' have shape {weights.shape}; expected [out, in]")
    units, depth = weights.shape
    size = int(np.prod(inp.shape, dtype=np.int64))
    if depth < 1 or size % depth:
        raise _fail(op, f"input '{inp.name}' of shape {inp.shape} is not a whole number of rows of {depth}")
    batches = size // depth
    if int(np.prod(out.shape, dtype=np.int64)) != batches * units:
        raise _fail(op, f"output '{out.name}' has shape {out.shape}, expected {batches * units} values")
    bias, has_bias = _bias(op, bias_t, units)
    q = weights.quant
    assert q is not None
    if q.per_channel:
        # FullyConnectedPerChannel: symmetric weights (TFLite ignores their zero point).
        w_scales, _ = _filter_scales(op, weights, units, 0, "weights")
        filter_offset = 0
    else:
        # Per tensor, TFLite's FullyConnected honours a weights zero point, and its Prepare
        # (GetQuantizedConvolutionMultipler) checks the bias scale.
        s_w, zp_w = f32(q.scale[0]), int(q.zero_point[0])
        if not s_w > 0 or not -128 <= zp_w <= 127:
            raise _fail(op, f"weights '{weights.name}' have scale {s_w} and zero point {zp_w}")
        if bias_t is not None:
            _check_bias_scale(op, bias_t, s_in * s_w)
        w_scales, filter_offset = [s_w], -zp_w
    # TFLite's reference FULLY_CONNECTED requantizes in double from the float scales
    # themselves, not with a Q31 multiplier: round(acc * (double(s_in) * double(s_w) /
    # double(s_out))). That double is computed here, once, by the same IEEE operations in the
    # same order (the same bits as the C expression), and the kernel reads it instead of
    # recomputing it in software doubles on every call (fully_connected_s8.h). The plan has no
    # float64 type: each double travels as two int32 words, little-endian like the targets.
    scales = Operand(data=fc_effective_scales(s_in, w_scales, s_out))
    act_min, act_max = _activation(op, out)
    train_params, trained = _training(op, units)
    params = {
        "batches": batches,
        "input_depth": depth,
        "output_depth": units,
        "input_offset": -zp_in,
        "filter_offset": filter_offset,
        "output_offset": zp_out,
        "act_min": act_min,
        "act_max": act_max,
        "has_bias": has_bias,
        "per_channel": int(q.per_channel),
        "input_scale": s_in,
        "output_scale": s_out,
        **train_params,
    }
    return KernelCall(
        op_defs()["FULLY_CONNECTED"].kernel,
        params,
        [
            Operand(tensor=inp.index),
            Operand(tensor=weights.index),
            bias,
            scales,
            *trained,
            Operand(tensor=out.index, is_output=True),
        ],
    )


def fc_effective_scales(s_in: float, w_scales: list[float], s_out: float) -> np.ndarray:
    """TFLite's FULLY_CONNECTED effective scales double(s_in) * double(s_w) / double(s_out),
    one per entry of w_scales, as int32 words (the low word of each double first)."""
    eff = np.array([float(s_in) * float(s_w) / float(s_out) for s_w in w_scales], dtype="<f8")
    return eff.view("<i4").astype(np.int32)


def _check_bias_scale(op: Op, bias: Tensor, product: float) -> None:
    """TFLite refuses a per-tensor int8 FULLY_CONNECTED whose bias scale is not
    input_scale * weights_scale (to 1e-6 relative): such a model is inconsistent."""
    scale = f32(bias.quant.scale[0]) if bias.quant is not None else 0.0
    if abs(product - scale) > 1e-6 * min(product, scale):
        raise _fail(op, f"bias '{bias.name}' has scale {scale:g}, expected input x weights scale {product:g}")
