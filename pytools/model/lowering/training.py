"""Lowering of the training step's own operators (pytools/train/autodiff.py emits them):
clamp masks, mask application, gradient sums, pooling/mean/pad input gradients, and the
loss.
Conv/depthwise/FC gradients are in training_conv.py."""

from __future__ import annotations

import numpy as np

from pytools.model.ir import Graph, ModelError, Op
from pytools.model.kernels import KernelCall, Operand
from pytools.model.lowering import lower, lowers


def forward_call(g: Graph, op: Op) -> KernelCall:
    """The lowered forward operator a training operator belongs to."""
    return lower(g, g.ops[op.options["forward"]])


def _size(g: Graph, t: int) -> int:
    return int(np.prod(g.tensor(t).shape))


@lowers("CLAMP_MASK")
def _clamp_mask(g: Graph, op: Op) -> KernelCall:
    fwd = forward_call(g, op).params
    y = op.inputs[0]
    return KernelCall(
        "clamp_mask_s8",
        # Ops without a fused activation (MEAN) still clamp: int8 saturation.
        dict(size=_size(g, y), act_min=fwd.get("act_min", -128), act_max=fwd.get("act_max", 127)),
        [Operand(y), Operand(op.outputs[0], is_output=True)],
    )


@lowers("GRAD_APPLY_MASK")
def _apply_mask(g: Graph, op: Op) -> KernelCall:
    gy, mask = op.inputs
    return KernelCall(
        "grad_apply_mask",
        dict(size=_size(g, gy)),
        [Operand(gy), Operand(mask), Operand(op.outputs[0], is_output=True)],
    )


@lowers("GRAD_ADD")
def _grad_add(g: Graph, op: Op) -> KernelCall:
    a, sa, b, sb = op.inputs
    out, so = op.outputs
    return KernelCall(
        "grad_add",
        dict(size=_size(g, a)),
        [
            Operand(a),
            Operand(sa),
            Operand(b),
            Operand(sb),
            Operand(out, is_output=True),
            Operand(so, is_output=True),
        ],
    )


def _grad_io(op: Op) -> list[Operand]:
    gy, sy = op.inputs[:2]
    gx, sx = op.outputs
    return [Operand(gy), Operand(sy), Operand(gx, is_output=True), Operand(sx, is_output=True)]


@lowers("AVERAGE_POOL_2D_GRAD_INPUT")
def _avg_pool_grad(g: Graph, op: Op) -> KernelCall:
    p = dict(forward_call(g, op).params)
    for k in ("act_min", "act_max", "input_offset", "output_offset"):
        p.pop(k, None)
    return KernelCall("avg_pool_s8_grad_input", p, _grad_io(op))


@lowers("MAX_POOL_2D_GRAD_INPUT")
def _max_pool_grad(g: Graph, op: Op) -> KernelCall:
    p = dict(forward_call(g, op).params)
    for k in ("act_min", "act_max"):
        p.pop(k, None)
    x, gy, sy = op.inputs
    gx, sx = op.outputs
    operands = [
        Operand(x),
        Operand(gy),
        Operand(sy),
        Operand(gx, is_output=True),
        Operand(sx, is_output=True),
    ]
    return KernelCall("max_pool_s8_grad_input", p, operands)


@lowers("PAD_GRAD_INPUT")
def _pad_grad(g: Graph, op: Op) -> KernelCall:
    p = dict(forward_call(g, op).params)
    p.pop("pad_value", None)
    return KernelCall("pad_s8_grad_input", p, _grad_io(op))


@lowers("MEAN_GRAD_INPUT")
def _mean_grad(g: Graph, op: Op) -> KernelCall:
    fwd = forward_call(g, op).params
    from pytools.model.kernels import params_layout

    fields = params_layout("mean_s8_grad_input").names
    missing = [f for f in fields if f not in fwd]
    if missing:
        raise ModelError(f"{op.where()}: MEAN's lowering lacks {missing} for its gradient")
    p = {f: fwd[f] for f in fields}
    if op.options.get("grad_broadcast"):
        # One row per image (pytools/train/mean_grad_broadcast.py): the averaged axes have size
        # 1 in G_x, count and so the scale stay the forward's.
        p.update({f"dim{k}": 1 for k in range(4) if p[f"reduce{k}"]})
    return KernelCall("mean_s8_grad_input", p, _grad_io(op))


@lowers("SOFTMAX_XENT")
def _softmax_xent(g: Graph, op: Op) -> KernelCall:
    logits, label = op.inputs
    t = g.tensor(logits)
    if t.dtype != "int8" or t.quant is None:
        raise ModelError(f"{op.where()}: the logits must be int8 and quantized")
    classes = t.shape[-1]
    return KernelCall(
        "softmax_xent_s8",
        dict(
            batches=_size(g, logits) // classes,
            classes=classes,
            input_scale=float(t.quant.scale[0]),
            label_smoothing=0.0,
        ),
        [Operand(logits), Operand(label)] + [Operand(o, is_output=True) for o in op.outputs],
    )
