"""Lowering of the loss heads (pytools/train/losses.py chooses them): LOGITS_S32, the
output layer's requantized values before int8 saturation, and the losses on them
(SOFTMAX_XENT_S32, SIGMOID_XENT_S32, MSE_S32). The int8 SOFTMAX_XENT is in training.py."""

from __future__ import annotations

import numpy as np

from pytools.model.ir import Graph, ModelError, Op
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lowers
from pytools.model.lowering.training import forward_call


def _empty(dtype: type) -> Operand:
    return Operand(data=np.zeros(0, dtype=dtype))


def whole_input_conv(params: dict) -> bool:
    """A CONV_2D that is a fully connected layer: its filter covers the whole (unpadded)
    input and gives one output position (MCUNet's 1x1 classifier on a 1x1 map)."""
    return (
        params["filter_h"] == params["input_h"]
        and params["filter_w"] == params["input_w"]
        and params["output_h"] == params["output_w"] == 1
        and params["pad_h"] == params["pad_w"] == 0
    )


@lowers("LOGITS_S32")
def _logits(g: Graph, op: Op) -> KernelCall:
    fwd = forward_call(g, op)
    p, ops = fwd.params, fwd.operands
    out = Operand(op.outputs[0], is_output=True)
    common = {k: p[k] for k in ("batches", "input_offset", "output_offset", "has_bias", "per_channel")}
    common |= {"train_rows": p["train_rows"], "train_bias_rows": p["train_bias_rows"]}
    if fwd.kernel == "fully_connected_s8":
        params = dict(
            common,
            input_depth=p["input_depth"],
            output_depth=p["output_depth"],
            filter_offset=p["filter_offset"],
            fixed_point=0,
            input_scale=p["input_scale"],
            output_scale=p["output_scale"],
        )
        inp, w, bias, scales, tw, tb, _ = ops
        operands = [inp, w, bias, scales, _empty(np.int32), _empty(np.int32), tw, tb, out]
    elif fwd.kernel == "conv2d_s8" and whole_input_conv(p):
        params = dict(
            common,
            input_depth=p["input_h"] * p["input_w"] * p["input_c"],
            output_depth=p["output_c"],
            filter_offset=0,
            fixed_point=1,
            input_scale=1.0,
            output_scale=1.0,
        )
        inp, w, bias, mults, shifts, tw, tb, _ = ops
        operands = [inp, w, bias, _empty(np.int32), mults, shifts, tw, tb, out]
    else:
        raise ModelError(
            f"{op.where()}: the loss reads a FULLY_CONNECTED or a whole-input CONV_2D output layer, "
            f"not {fwd.kernel}"
        )
    return KernelCall("logits_s32", params, operands)


def _quant(g: Graph, op: Op, t: int) -> tuple[float, int]:
    q = g.tensor(t).quant
    if q is None or q.per_channel:
        raise ModelError(f"{op.where()}: '{g.tensor(t).name}' needs one scale and zero point")
    return float(q.scale[0]), int(q.zero_point[0])


def _outputs(op: Op) -> list[Operand]:
    return [Operand(o, is_output=True) for o in op.outputs]


def _rows(g: Graph, t: int) -> tuple[int, int]:
    shape = g.tensor(t).shape
    per_row = int(shape[-1]) if len(shape) > 1 else int(np.prod(shape))
    return int(np.prod(shape)) // max(per_row, 1), per_row


@lowers("SOFTMAX_XENT_S32")
def _softmax_xent_s32(g: Graph, op: Op) -> KernelCall:
    logits, label = op.inputs
    scale, _ = _quant(g, op, logits)
    batches, classes = _rows(g, logits)
    params = dict(batches=batches, classes=classes, input_scale=scale, label_smoothing=0.0)
    return KernelCall("softmax_xent_s32", params, [Operand(logits), Operand(label), *_outputs(op)])


@lowers("SIGMOID_XENT_S32")
def _sigmoid_xent_s32(g: Graph, op: Op) -> KernelCall:
    logits, label = op.inputs
    scale, zp = _quant(g, op, logits)
    batches, outputs = _rows(g, logits)
    params = dict(batches=batches, outputs=outputs, input_scale=scale, input_zero_point=zp)
    return KernelCall("sigmoid_xent_s32", params, [Operand(logits), Operand(label), *_outputs(op)])


@lowers("MSE_S32")
def _mse_s32(g: Graph, op: Op) -> KernelCall:
    outputs, target = op.inputs
    scale, zp = _quant(g, op, outputs)
    n = int(np.prod(g.tensor(outputs).shape))
    t = g.tensor(target)
    if int(np.prod(t.shape)) != n:
        raise ModelError(
            f"{op.where()}: the target '{t.name}' has {int(np.prod(t.shape))} values for {n} outputs"
        )
    if t.dtype == "float32":
        t_scale, t_zp, is_float = 1.0, 0, 1
    elif t.dtype == "int8":
        (t_scale, t_zp), is_float = _quant(g, op, target), 0
    else:
        raise ModelError(f"{op.where()}: the target '{t.name}' is {t.dtype}; it must be int8 or float32")
    batches, size = _rows(g, outputs)
    params = dict(
        batches=batches,
        size=size,
        input_scale=scale,
        input_zero_point=zp,
        target_float=is_float,
        target_scale=t_scale,
        target_zero_point=t_zp,
    )
    return KernelCall("mse_s32", params, [Operand(outputs), Operand(target), *_outputs(op)])
