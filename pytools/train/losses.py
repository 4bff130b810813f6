"""Which loss a training step takes, and from which tensor (`--loss auto|ce|bce|mse`).

The loss is read from the model's output layer BEFORE its int8 saturation whenever that
layer is a FULLY_CONNECTED, or a CONV_2D whose filter covers its whole input (MCUNet's
classifier, followed by RESHAPE), without a fused activation: LOGITS_S32 recomputes its
requantized values as int32 and the loss kernels take those. Then a logit past +127 is
still the float model's logit, the loss and its gradient are exact, and the layer's own
gradient needs no clamp mask. Taken from the saturated int8 values, two classes both at
+127 look equal (loss ln 2) and training could stay there for good (issue 12, docs/training.md
"No stuck runs").

Losses:
  ce   softmax cross-entropy, on a SOFTMAX output's logits or on a graph that ends in logits;
  bce  binary cross-entropy (sigmoid), on a LOGISTIC output's logits (its input: no LOGISTIC
       kernel is needed) or on logits; 1 output: the label is 0 or 1; several: one-vs-rest;
  mse  mean squared error of a linear output: against the model's input when the output has
       the input's size (an autoencoder; the loss of a sample is its anomaly score), else
       against a float32 target vector given with each sample.
  auto SOFTMAX -> ce, LOGISTIC -> bce, a linear output the size of the input -> mse
       (autoencoder), a linear output of several values -> ce (logits), of one value -> mse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytools.model.ir import Graph, ModelError, Op

LOSSES = ("auto", "ce", "bce", "mse")
NAMES = {
    "ce": "softmax cross-entropy",
    "bce": "binary cross-entropy",
    "mse": "mean squared error",
}
# The loss operators a training step may end its forward part with (ops.def names).
LOSS_OPS = ("SOFTMAX_XENT", "SOFTMAX_XENT_S32", "SIGMOID_XENT_S32", "MSE_S32")
LOSS_OPS_F32 = ("SOFTMAX_XENT_F32", "SOFTMAX_XENT_S32_F32")  # the float-gradient option's


def loss_op_index(ops: Sequence[Any]) -> int:
    """The index of a training plan's loss operator among its operators (anything with a
    `.kind`: the plan's or the training graph's), as firmware/app/train.c's is_loss finds it:
    the forward part and the loss are operators [0, index + 1), which EVAL runs without
    training. A plan with no loss operator, or more than one, is not a training step."""
    found = [i for i, op in enumerate(ops) if op.kind in LOSS_OPS]
    if len(found) != 1:
        raise ModelError(
            f"the plan has {len(found)} loss operators ({', '.join(LOSS_OPS)}): it is not a training step"
        )
    return found[0]


def label_classes(head: Head, g: Graph) -> int:
    """How many label values a data set may use for this loss: ce the classes (outputs per
    row); bce with one output 2 (0/1), with several (one-vs-rest) one per output; an
    autoencoder's mse 2 (0 normal, 1 anomalous: the labels only score the anomaly detection);
    a regression's mse none (its targets are float32 vectors, not labels: 0)."""
    per_row = int(g.tensor(head.output).shape[-1]) if g.tensor(head.output).shape else 1
    if head.loss == "ce":
        return per_row
    if head.loss == "bce":
        return 2 if per_row == 1 else per_row
    return 2 if head.target == "input" else 0


@dataclass
class Head:
    loss: str  # ce | bce | mse
    why: str  # what was picked and why, for the user
    end: int  # forward operators [0, end) belong to the step (the SOFTMAX/LOGISTIC is the loss's)
    output: int  # the int8 tensor the loss is about (logits, or the reconstruction)
    layer: int  # the operator producing it through RESHAPEs, if LOGITS_S32 can recompute it; else -1
    target: str  # "label" (int32 class or 0/1), "input" (autoencoder), "vector" (float32 target)

    def describe(self) -> str:
        return f"{self.loss} ({NAMES[self.loss]}): {self.why}"


def _producers(g: Graph) -> dict[int, Op]:
    return {t: op for op in g.ops for t in op.outputs}


def fc_like(g: Graph, op: Op) -> bool:
    """FULLY_CONNECTED, or a CONV_2D whose filter covers its whole input with one output
    position (what LOGITS_S32 computes), without a fused activation."""
    if op.options.get("activation", "NONE") != "NONE":
        return False
    if op.kind == "FULLY_CONNECTED":
        return True
    if op.kind != "CONV_2D":
        return False
    x, w, y = g.tensor(op.inputs[0]).shape, g.tensor(op.inputs[1]).shape, g.tensor(op.outputs[0]).shape
    return (
        len(x) == 4
        and len(w) == 4
        and tuple(w[1:3]) == tuple(x[1:3])
        and tuple(y[1:3]) == (1, 1)
        and (op.options.get("padding") == "VALID" or tuple(x[1:3]) == (1, 1))
    )


def output_layer(g: Graph, t: int) -> Op | None:
    """The operator that produces tensor t, looking through RESHAPEs."""
    prod = _producers(g)
    op = prod.get(t)
    while op is not None and op.kind == "RESHAPE":
        op = prod.get(op.inputs[0])
    return op


def choose(g: Graph, loss: str = "auto") -> Head:
    """The loss for this graph: `loss` checked against its output, or picked by `auto`."""
    if loss not in LOSSES:
        raise ModelError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ModelError("training needs a model with one input and one output")
    prod = _producers(g)
    op = prod.get(g.outputs[0])
    if op is not None and op.kind == "DEQUANTIZE":
        op = prod.get(op.inputs[0])
    if op is None:
        raise ModelError("the model's output is not computed by any operator")
    act = op.kind if op.kind in ("SOFTMAX", "LOGISTIC") else ""
    out = op.inputs[0] if act else op.outputs[0]
    end = op.index if act else op.index + 1
    t_out, t_in = g.tensor(out), g.tensor(g.inputs[0])
    n_out = int(np.prod(t_out.shape))
    per_row = int(t_out.shape[-1]) if t_out.shape else 1
    autoencoder = n_out == int(np.prod(t_in.shape)) and t_in.dtype == "int8" and n_out > 1
    if loss == "auto":
        if act == "SOFTMAX":
            loss, why = "ce", "the model ends in SOFTMAX"
        elif act == "LOGISTIC":
            loss, why = "bce", "the model ends in LOGISTIC (taken from its input logits)"
        elif autoencoder:
            loss, why = "mse", "a linear output the size of the input: an autoencoder, target = the input"
        elif per_row > 1:
            loss, why = "ce", f"the model ends in {per_row} linear outputs: taken as logits"
        else:
            loss, why = "mse", "one linear output: a regression (use --loss bce for a binary classifier)"
    else:
        why = "as asked"
    if act == "SOFTMAX" and loss != "ce":
        raise ModelError(f"--loss {loss} does not fit a model ending in SOFTMAX: use ce (or auto)")
    if act == "LOGISTIC" and loss != "bce":
        raise ModelError(f"--loss {loss} does not fit a model ending in LOGISTIC: use bce (or auto)")
    if loss == "ce" and per_row < 2:
        raise ModelError(f"--loss ce needs at least 2 classes; the output '{t_out.name}' has {per_row}")
    if t_out.dtype != "int8" or t_out.quant is None:
        raise ModelError(f"the loss needs an int8 quantized output; '{t_out.name}' is {t_out.dtype}")
    target = "label"
    if loss == "mse":
        target = "input" if autoencoder else "vector"
        if autoencoder and why == "as asked":
            why = "target = the input (an autoencoder: the output has the input's size)"
        elif not autoencoder and why == "as asked":
            why = "target = a float32 vector given with each sample"
    layer = output_layer(g, out)
    fc = layer is not None and fc_like(g, layer)
    return Head(loss, why, end, out, layer.index if fc else -1, target)
