"""Lowering of the conv / depthwise / fully-connected gradient and update operators.

Their parameters are the forward layer's geometry (copied from its own lowering) plus the
training fields; their operands follow each kernel's header (firmware/kernels/*_grad_*.h).
"""

from __future__ import annotations

import numpy as np

from pytools.model.ir import Graph, ModelError, Op
from pytools.model.kernels import KernelCall, Operand, params_layout
from pytools.model.lowering import lowers
from pytools.model.lowering.training import forward_call

KERNEL = {
    "CONV_2D": "conv2d_s8",
    "DEPTHWISE_CONV_2D": "depthwise_conv2d_s8",
    "FULLY_CONNECTED": "fully_connected_s8",
}
MAX_POSITIONS = 65_793  # int32 weight-gradient accumulation is exact up to this many (grad_update.h)


def _empty(dtype: str) -> Operand:
    return Operand(data=np.zeros(0, dtype=dtype))


def _tensor_or(t: int, dtype: str) -> Operand:
    return Operand(tensor=t) if t >= 0 else _empty(dtype)


def _params(kernel: str, fwd: dict, **extra: object) -> dict:
    names = params_layout(kernel).names
    p = {k: v for k, v in fwd.items() if k in names}
    p.update({k: v for k, v in extra.items() if k in names})
    missing = set(names) - set(p)
    if missing:
        raise ModelError(f"{kernel}: no value for {sorted(missing)}")
    return p


def _weight_scales(g: Graph, fwd_op: Op) -> Operand:
    w = g.tensor(fwd_op.inputs[1])
    assert w.quant is not None
    return Operand(data=np.asarray(w.quant.scale, dtype=np.float32))


def _kind(op: Op) -> str:
    return op.kind.rsplit("_GRAD_", 1)[0]


def _broadcast(g: Graph, op: Op, gy: int, kernel: str) -> int:
    """1 where G_y is one row per image (pytools/train/mean_grad_broadcast.py), else 0; G_y's
    shape checked against the layer's output, since the kernel reads as many gradients as its
    parameters say (the output's, or one row per image): a graph where the two disagree is
    refused here, not planned to read past the gradient's bytes."""
    broadcast = bool(op.options.get("grad_broadcast", False))
    fwd_op = g.ops[op.options["forward"]]
    out, got = tuple(g.tensor(fwd_op.outputs[0]).shape), tuple(g.tensor(gy).shape)
    if broadcast:
        ok = "grad_broadcast" in params_layout(kernel).names and got == (
            out[0],
            *(1 for _ in out[1:-1]),
            out[-1],
        )
    else:
        ok = int(np.prod(got)) == int(np.prod(out))
    if not ok:
        raise ModelError(
            f"{fwd_op.where()}: {op.kind} reads an output gradient shaped {got} for the layer's "
            f"output {out}" + (" as one row per image (grad_broadcast)" if broadcast else "")
        )
    return int(broadcast)


def _grad_input(g: Graph, op: Op) -> KernelCall:
    fwd_op = g.ops[op.options["forward"]]
    kernel = KERNEL[_kind(op)] + "_grad_input"
    gy, sy, mask = op.inputs[:3]
    gx, sx = op.outputs
    fwd = forward_call(g, op).params
    params = _params(
        kernel,
        fwd,
        has_mask=int(mask >= 0),
        train_rows=fwd["train_rows"],
        grad_broadcast=_broadcast(g, op, gy, kernel),
    )
    trained = fwd_op.options.get("trained_filter", -1)
    return KernelCall(
        kernel,
        params,
        [
            Operand(gy),
            Operand(sy),
            _tensor_or(mask, "uint8"),
            Operand(fwd_op.inputs[1]),
            _tensor_or(trained, "int8"),
            _weight_scales(g, fwd_op),
            Operand(gx, is_output=True),
            Operand(sx, is_output=True),
        ],
    )


def _grad_update(g: Graph, op: Op) -> KernelCall:
    fwd_op = g.ops[op.options["forward"]]
    kernel = KERNEL[_kind(op)] + "_grad_update"
    x, gy, sy, mask, w_ram, b_ram, rng = op.inputs
    fwd = forward_call(g, op).params
    inp = g.tensor(fwd_op.inputs[0])
    assert inp.quant is not None
    positions = int(np.prod(g.tensor(fwd_op.outputs[0]).shape[:-1]))
    if positions > MAX_POSITIONS:
        raise ModelError(
            f"{fwd_op.where()}: {positions} output positions exceed the {MAX_POSITIONS} the "
            "weight-gradient accumulator takes exactly; train a later layer"
        )
    s_x, scales = float(inp.quant.scale[0]), _weight_scales(g, fwd_op)
    if not op.options.get("qas", True):
        # The ablation without QAS: plain SGD on the integers, dW_q = -lr * s_W * dL/dW and
        # db_q = -lr * s_W * s_x * dL/db. The kernels' QAS factors are lr*s_g*s_x/s_W (weights)
        # and lr*s_g/(s_W*s_x) (biases); s_x -> 1 and s_W -> 1/(s_W*s_x) turn them into these.
        scales = Operand(data=(1.0 / (scales.data.astype(np.float64) * s_x)).astype(np.float32))
        s_x = 1.0
    params = _params(
        kernel,
        fwd,
        has_mask=int(mask >= 0),
        update_weights=int(w_ram >= 0),
        update_bias=int(b_ram >= 0),
        lr=float(op.options["lr"]),
        input_scale=s_x,
        grad_broadcast=_broadcast(g, op, gy, kernel),
    )
    return KernelCall(
        kernel,
        params,
        [
            Operand(gy),
            Operand(sy),
            _tensor_or(mask, "uint8"),
            _tensor_or(x, "int8"),
            scales,
            _tensor_or(w_ram, "int8"),
            _tensor_or(b_ram, "int32"),
            Operand(rng),
        ],
    )


for _k in KERNEL:
    lowers(f"{_k}_GRAD_INPUT")(_grad_input)
    lowers(f"{_k}_GRAD_UPDATE")(_grad_update)


@lowers("DEPTHWISE_CONV_2D_GRAD_INPUT_2PASS")
def _grad_input_2pass(g: Graph, op: Op) -> KernelCall:
    """The one-pass operands and parameters, and keep: the input channels whose int32
    accumulators the kernel keeps (op.options["keep"], 0 when absent, at most the input's
    channels: its scratch grows by keep * batches * input_h * input_w * 4 bytes, rounded up to 8;
    the others are computed twice)."""
    call = _grad_input(g, op)
    keep = int(op.options.get("keep", 0))
    channels = call.params["input_c"]
    if not 0 <= keep <= channels:
        raise ModelError(
            f"{g.ops[op.options['forward']].where()}: DEPTHWISE_CONV_2D_GRAD_INPUT_2PASS keep={keep} "
            f"is not a number of its {channels} input channels (0 to {channels})"
        )
    return KernelCall(call.kernel + "_2pass", {**call.params, "keep": keep}, call.operands)


def conv_two_pass_takes(g: Graph, op: Op) -> bool:
    """Whether CONV_2D_GRAD_INPUT_2PASS takes this conv input gradient: a 1x1 filter with
    stride 1 and no padding whose output has the input's size (each input pixel's gradient
    depends on its own output pixel's alone)."""
    p = forward_call(g, op).params
    return (
        p["filter_h"] == p["filter_w"] == 1
        and p["stride_h"] == p["stride_w"] == 1
        and p["pad_h"] == p["pad_w"] == 0
        and (p["output_h"], p["output_w"]) == (p["input_h"], p["input_w"])
    )


@lowers("CONV_2D_GRAD_INPUT_2PASS")
def _conv_grad_input_2pass(g: Graph, op: Op) -> KernelCall:
    """The one-pass operands and parameters, and keep: the pixels whose int32 accumulators the
    kernel keeps (op.options["keep"], set by the compiler; the rest are computed twice)."""
    if not conv_two_pass_takes(g, op):
        raise ModelError(
            f"{g.ops[op.options['forward']].where()}: CONV_2D_GRAD_INPUT_2PASS takes 1x1 convs "
            "with stride 1 and no padding only; use CONV_2D_GRAD_INPUT"
        )
    call = _grad_input(g, op)
    return KernelCall(
        call.kernel + "_2pass", {**call.params, "keep": int(op.options.get("keep", 0))}, call.operands
    )
