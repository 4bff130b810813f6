"""Multiply-accumulates: of a model's forward layers, and of every operator of a training step.

Forward conv / depthwise / fully-connected layers count their products; an input gradient
as many as its layer's forward (the transposed convolution); a weight gradient its forward's
times the trained fraction of rows (none for a bias-only update: a sum is not a
multiply-accumulate). Masks, adds, pooling and the loss count none. MACs count every
product, skipped by a zero-skipping kernel or not.
"""

from __future__ import annotations

import numpy as np

from pytools.model.ir import Graph, Op
from pytools.train.compile_train import CompiledTraining

FORWARD_MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _prod(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def op_macs(g: Graph, op: Op) -> int:
    """Multiply-accumulates of one forward conv / depthwise / fully-connected operator."""
    if op.kind not in FORWARD_MAC_OPS:
        return 0
    x, w, y = g.tensor(op.inputs[0]), g.tensor(op.inputs[1]), g.tensor(op.outputs[0])
    if op.kind == "CONV_2D":  # w [cout, kh, kw, cin]
        return _prod(y.shape) * _prod(w.shape[1:])
    if op.kind == "DEPTHWISE_CONV_2D":  # w [1, kh, kw, cout]
        return _prod(y.shape) * w.shape[1] * w.shape[2]
    return (_prod(x.shape) // w.shape[1]) * _prod(w.shape)  # FC: rows x out x in


def model_params(g: Graph) -> int:
    """Weights and biases of the conv / depthwise / fully-connected layers."""
    return sum(
        _prod(g.tensor(t).shape)
        for op in g.ops
        if op.kind in FORWARD_MAC_OPS
        for t in op.inputs[1:3]
        if t >= 0
    )


def graph_macs(g: Graph) -> dict[int, int]:
    """Operator index -> forward MACs, for the operators that multiply-accumulate."""
    return {op.index: m for op in g.ops if (m := op_macs(g, op))}


def step_macs(ct: CompiledTraining) -> list[int]:
    """MACs of every operator of the training step, in step order (see the module's rules)."""
    g = ct.train.graph
    out = []
    for op in g.ops:
        # The two-pass and float-gradient variants compute the same products as their kind.
        kind = op.kind.removesuffix("_2PASS").removesuffix("_F32")
        if kind in FORWARD_MAC_OPS:
            out.append(op_macs(g, op))
        elif kind.endswith("_GRAD_INPUT") and kind.rsplit("_GRAD_", 1)[0] in FORWARD_MAC_OPS:
            out.append(op_macs(g, g.ops[op.options["forward"]]))
        elif kind.endswith("_GRAD_UPDATE"):
            fwd = g.ops[op.options["forward"]]
            w = g.tensor(fwd.inputs[1])
            channels = w.shape[-1] if fwd.kind == "DEPTHWISE_CONV_2D" else w.shape[0]
            if op.options.get("train_cols", 0):  # an input-channel slice: its share of the inputs
                channels, trained = w.shape[-1], int(op.options["train_cols"])
            else:
                trained = int(op.options.get("train_rows", 0))
            out.append(op_macs(g, fwd) * trained // channels)
        else:
            out.append(0)
    return out
