"""Autodiff at compile time: the forward graph + a scheme -> one static training step.

The step is an ordinary IR graph whose operators run in order:
  1. the forward pass, with a CLAMP_MASK right after every operator whose output gradient
     is needed (1 bit per element is all backward keeps of a clamp);
  2. the loss (pytools/train/losses.py chooses it: softmax or binary cross-entropy, or
     mean squared error), taken from the output layer's un-clamped int32 values (LOGITS_S32)
     where it can be recomputed, else from the int8 logits (SOFTMAX_XENT): loss,
     prediction, and the output's gradient;
  3. the backward pass in reverse order. Each trained layer computes its input gradient
     (if a layer below needs it) and then applies its own update right away, so no
     gradient buffer outlives its layer (operator reordering).
Pruning falls out of construction: a gradient exists only for tensors downstream of a
trained parameter; a mask only where such a gradient passes a clamp; a saved activation
only where a weight update or an input gradient reads it (MAX_POOL_2D's input, MUL's
other factor, an activation's input, MAXIMUM/MINIMUM's inputs). A CONV_2D trained on an
input-channel slice keeps only those channels of its input (a SLICE in the forward pass, just
before the layer): its update reads nothing else. Nothing below the lowest updated layer keeps
anything.
Gradients are int8 tensors, each with a float32 scale tensor (firmware/kernels/grad.h).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytools.model.ir import Graph, ModelError, Op, Tensor
from pytools.model.kernels import op_defs
from pytools.train.losses import Head, choose
from pytools.train.scheme import LayerUpdate, Scheme, resolve, trainable_ops

CLAMPING = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "MEAN",
    "MUL",
    "SUB",
)
# Functions of one variable: their input gradient is G_y times the float function's
# derivative at the saved input (unary_s8_grad_input, a table of it); no mask, the
# derivative already is 0 where RELU6 and RELU_N1_TO_1 clamp.
UNARY = ("LOGISTIC", "TANH", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU")
# The gradient is the output's gradient, the same bytes and scale: shape changes of
# unchanged row-major data (the compiler aliases the tensors), and QUANTIZE, which on the
# gradient's path is an int8 -> int8 requantization of the same real values (its rounding
# passes straight through, grad.h).
PASS_THROUGH = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "QUANTIZE")
# Operators that only move values: their input gradients are movements of G_y with its
# scale (pytools/model/lowering/training_elementwise.py, training_slicing.py).
MOVING = ("CONCATENATION", "TRANSPOSE", "STRIDED_SLICE", "SLICE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH")
BACKWARD_OK = (
    *CLAMPING,
    *PASS_THROUGH,
    "PAD",
    *UNARY,
    "MAXIMUM",
    "MINIMUM",
    "RESIZE_NEAREST_NEIGHBOR",
    *MOVING,
)
# Operators whose gradient is their own kernel after the mask (no weights).
POOLING = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN")


@dataclass
class TrainGraph:
    graph: Graph  # the whole step: forward, loss, backward
    updates: dict[int, LayerUpdate]
    n_forward: int  # operators [0, n_forward) are the forward pass (predict = run these)
    logits: int  # tensor ids: the int8 output the loss is about (logits or reconstruction)
    label: int  # the step's second input: int32 label, or float32 target vector (head.target)
    loss: int
    prediction: int
    head: Head | None = None  # which loss, from which tensor (pytools/train/losses.py)
    loss_end: int = 0  # operators [0, loss_end) give the loss and prediction (evaluation)
    saved: list[int] = field(default_factory=list)  # kept for weight updates and max pools
    masks: list[int] = field(default_factory=list)
    gradients: list[int] = field(default_factory=list)
    state: list[int] = field(default_factory=list)  # trained weight slices, biases, RNG


def blocked_ops(fwd: Graph, updates: dict[int, LayerUpdate], end: int) -> tuple[set[int], list[Op]]:
    """The tensors that carry a gradient (downstream of a trained layer, before operator
    `end`, the loss), and the operators on their path that have no backward kernel."""
    requires: set[int] = set()
    blocked: list[Op] = []
    for op in fwd.ops[:end]:
        if op.index in updates or any(t in requires for t in op.inputs):
            if op.kind not in BACKWARD_OK:
                blocked.append(op)
            requires.update(op.outputs)
    return requires, blocked


def untrainable(fwd: Graph, scheme: Scheme, blocked: list[Op], end: int) -> ModelError:
    """The error for a scheme that would train through operators without a backward kernel:
    every one of them with its tensors, and the nearest scheme that keeps every such
    operator frozen (the same updates restricted to the layers after the last of them,
    or, when that leaves nothing, the biases of those layers)."""
    n = len(blocked)
    lines = [
        f"the scheme ({scheme.describe()}) trains through {n} operator{'s' if n > 1 else ''} "
        "whose backward kernel is missing (the forward kernels exist: frozen, they run):",
        *(
            f"  {op.where()}: inputs {_names(fwd, op.inputs)}; outputs {_names(fwd, op.outputs)}"
            for op in blocked
        ),
        "Backward kernels exist for: " + ", ".join(BACKWARD_OK) + " (docs/operators.md).",
    ]
    layers = trainable_ops(fwd)
    last = max(op.index for op in blocked)
    nearest = None
    while True:  # a branch may hold more such operators: restrict until none is in the way
        above = [i for i in layers if i > last]
        if not above:
            break
        nearest = scheme.restricted_to_last(len(above))
        if not nearest.bias_layers and not nearest.weights:
            nearest.bias_layers = len(above)
        more = blocked_ops(fwd, resolve(fwd, nearest), end)[1]
        if not more:
            break
        last, nearest = max(op.index for op in more), None
    if nearest is None:
        kinds = ", ".join(dict.fromkeys(op.kind for op in blocked))
        lines.append(
            f"No trainable layer lies after {fwd.ops[last].where()}: nothing in this model can be trained "
            f"until {kinds} {'have backward kernels' if ',' in kinds else 'has a backward kernel'}."
        )
    else:
        k = len([i for i in layers if i > last])
        lines.append(
            f'Nearest scheme that keeps them frozen: "{nearest.inline()}" ({nearest.describe()}), '
            f"which trains only the {k} trainable layer{'s' if k > 1 else ''} after {fwd.ops[last].where()}."
        )
    return ModelError("\n".join(lines))


def _names(g: Graph, indices: list[int]) -> str:
    return ", ".join(f"'{g.tensor(i).name}'" for i in indices if i >= 0) or "none"


def build_training_graph(
    fwd: Graph,
    scheme: Scheme,
    lr: float = 0.05,
    seed: int = 1,
    float_grads: bool = False,
    loss: str = "auto",
    saturated_loss: bool = False,
) -> TrainGraph:
    """float_grads: the float-gradient build option (gradients float32 instead of int8 with a
    dynamic scale; each backward operator becomes its `_F32` variant), to compare accuracy.
    loss: auto | ce | bce | mse (pytools/train/losses.py; the TrainGraph's head says which).
    saturated_loss: a control, not a mode to train with. The loss of the int8 (saturated)
    output with the clamp's exact derivative (a mask): what the engine did before issue 12
    for a CONV_2D -> RESHAPE head, which froze for good once both logits sat at +127
    (tests/test_no_stuck_runs.py shows it against the default)."""
    head = choose(fwd, loss)
    # The int32 path (LOGITS_S32) needs a recomputable output layer; else the int8 SOFTMAX_XENT.
    exact = head.layer >= 0 and not saturated_loss
    if not exact and head.loss != "ce":
        raise ModelError(
            f"--loss {head.loss} needs the output layer to be a FULLY_CONNECTED (or a CONV_2D over its "
            "whole input) without a fused activation"
        )
    softmax = head.end
    updates = resolve(fwd, scheme)
    if not updates:
        raise ModelError(f"the scheme ({scheme.describe()}) updates nothing in this model")
    tensors = [Tensor(**{**t.__dict__}) for t in fwd.tensors]
    ops: list[Op] = []

    def new_tensor(name: str, shape: tuple[int, ...], dtype: str, data: np.ndarray | None = None) -> int:
        tensors.append(Tensor(len(tensors), name, shape, dtype, None, data))
        return len(tensors) - 1

    grad_dtype = "float32" if float_grads else "int8"

    def emit(kind: str, inputs: list[int], outputs: list[int], **options: object) -> Op:
        # Once the forward pass is emitted (LOGITS_S32 is forward arithmetic, no gradient).
        if float_grads and tb.n_forward and kind != "LOGITS_S32":
            if f"{kind}_F32" not in op_defs():
                raise ModelError(
                    f"the float-gradient option has no kernel for {kind} yet (it covers "
                    + ", ".join(k.removesuffix("_F32") for k in op_defs() if k.endswith("_F32"))
                    + ")"
                )
            kind = f"{kind}_F32"
        op = Op(len(ops), kind, inputs, outputs, dict(options))
        ops.append(op)
        return op

    # Which tensors carry a gradient: those downstream of a trained layer.
    requires, blocked = blocked_ops(fwd, updates, softmax)
    if blocked:
        raise untrainable(fwd, scheme, blocked, softmax)
    tb = TrainGraph(Graph(tensors, ops, [], []), updates, 0, head.output, -1, -1, -1, head)
    # RAM state of every trained layer: the forward pass reads its weights from there too.
    state = {i: _state_for(fwd, fwd.ops[i], u, tensors, tb) for i, u in updates.items()}
    if head.layer in updates and updates[head.layer].cols:
        raise ModelError(
            f"{fwd.ops[head.layer].where()} is the output layer: it trains output channels only "
            "(give it a [weights] ratio, not [input_channels])"
        )
    kept: dict[int, int] = {}  # forward op index -> the input channels saved for its update

    # 1. Forward (the final SOFTMAX and anything after it are replaced by the loss).
    mask_of: dict[int, int] = {}
    copy_of: dict[int, int] = {}  # forward op index -> its index in the training step
    for op in fwd.ops[:softmax]:
        trained = {}
        if op.index in updates:
            trained = dict(
                train_rows=updates[op.index].rows,
                train_cols=updates[op.index].cols,
                trained_filter=state[op.index][0],
                trained_bias=state[op.index][1],
            )
            if updates[op.index].cols:
                kept[op.index] = _keep_channels(fwd, op, updates[op.index].cols, tensors, emit)
        copy_of[op.index] = emit(op.kind, list(op.inputs), list(op.outputs), **op.options, **trained).index
        y = op.outputs[0]
        # The output layer's clamp is int8 saturation, not an activation. With the loss taken
        # from its un-clamped values nothing is clamped on the loss's path; from the int8
        # logits, the gradient passes straight through it (a mask there stopped all learning
        # for good: MobileNetV2 and the zoo CNN at lr 0.05, loss stuck at ln(classes)). Either
        # way no mask, also where RESHAPEs follow the layer (MCUNet's CONV_2D -> RESHAPE).
        plain_output = not saturated_loss and (
            op.index == head.layer
            or (
                op.outputs[0] == _through_reshapes(fwd, head.output)
                and op.options.get("activation", "NONE") == "NONE"
            )
        )
        if y in requires and op.kind in CLAMPING and not plain_output:
            n = int(np.prod(fwd.tensor(y).shape))
            m = new_tensor(f"{fwd.tensor(y).name}/mask", ((n + 7) // 8,), "uint8")
            emit("CLAMP_MASK", [y], [m], forward=copy_of[op.index])
            mask_of[op.index] = m
            tb.masks.append(m)
    tb.n_forward = len(ops)

    # 2. Loss.
    logits = tb.logits
    out_t = fwd.tensor(logits)
    if head.target == "vector":
        tb.label = new_tensor("target", out_t.shape, "float32")
    else:
        tb.label = new_tensor("label", (1,), "int32")
    tb.loss = new_tensor("loss", (1,), "float32")
    tb.prediction = new_tensor("prediction", (1,), "int32")
    g_logits = new_tensor("grad/logits", out_t.shape, grad_dtype)
    s_logits = new_tensor("grad/logits/scale", (1,), "float32")
    loss_outs = [tb.loss, tb.prediction, g_logits, s_logits]
    if exact:
        layer = fwd.ops[head.layer]
        wide = new_tensor(f"{out_t.name}/int32", out_t.shape, "int32")
        tensors[wide].quant = out_t.quant  # the same scale and zero point, without the clamp
        emit("LOGITS_S32", [layer.inputs[0]], [wide], forward=copy_of[head.layer])
        if head.loss == "mse":
            target = fwd.inputs[0] if head.target == "input" else tb.label
            emit("MSE_S32", [wide, target], loss_outs)
        elif head.loss == "bce":
            emit("SIGMOID_XENT_S32", [wide, tb.label], loss_outs)
        else:
            emit("SOFTMAX_XENT_S32", [wide, tb.label], loss_outs)
    else:
        emit("SOFTMAX_XENT", [logits, tb.label], loss_outs)
    tb.loss_end = len(ops)
    grad: dict[int, tuple[int, int]] = {logits: (g_logits, s_logits)}
    tb.gradients += [g_logits]
    rng = new_tensor("rng", (1,), "uint32", np.array([seed & 0xFFFFFFFF or 1], dtype=np.uint32))
    tensors[rng].persistent = True
    tb.state.append(rng)

    def add_grad(t: int, g: tuple[int, int]) -> None:
        if t not in grad:
            grad[t] = g
            return
        a, b = grad[t], g  # a fork: the tensor feeds two paths, their gradients add up
        gs = new_tensor(f"grad/{fwd.tensor(t).name}/sum", fwd.tensor(t).shape, grad_dtype)
        ss = new_tensor(f"grad/{fwd.tensor(t).name}/sum/scale", (1,), "float32")
        emit("GRAD_ADD", [a[0], a[1], b[0], b[1]], [gs, ss])
        grad[t] = (gs, ss)
        tb.gradients.append(gs)

    def new_grad(t: int) -> tuple[int, int]:
        g = new_tensor(f"grad/{fwd.tensor(t).name}", fwd.tensor(t).shape, grad_dtype)
        s = new_tensor(f"grad/{fwd.tensor(t).name}/scale", (1,), "float32")
        tb.gradients.append(g)
        return g, s

    # 3. Backward, in reverse, updating each trained layer as soon as its gradient is known.
    for op in reversed(fwd.ops[:softmax]):
        y = op.outputs[0]
        if y not in requires or y not in grad:
            continue
        gy, sy = grad[y]
        mask = mask_of.get(op.index, -1)
        if op.kind in PASS_THROUGH:
            if op.inputs[0] in requires:
                add_grad(op.inputs[0], (gy, sy))  # same bytes, another shape
            continue
        f = copy_of[op.index]
        if op.kind in MOVING:
            # A movement kernel on the int8 gradient: the same values moved back, the same
            # scale (CONCATENATION's int8 inputs are quantized as its output; a slice's
            # gradient is G_y scattered into zeros).
            for k, x in enumerate(op.inputs if op.kind == "CONCATENATION" else op.inputs[:1]):
                if x in requires:
                    gx = new_tensor(f"grad/{fwd.tensor(x).name}", fwd.tensor(x).shape, grad_dtype)
                    tb.gradients.append(gx)
                    emit(f"{op.kind}_GRAD_INPUT", [gy], [gx], forward=f, input=k)
                    add_grad(x, (gx, sy))
            continue
        if op.kind in ("ADD", "SUB", "MUL", *POOLING):
            # The clamp's derivative first (the mask keeps the scale), then the op's own.
            gm = new_grad(y)[0]
            emit("GRAD_APPLY_MASK", [gy, mask], [gm], forward=f)
            gy, mask = gm, -1
        if op.kind in ("ADD", "SUB", "MAXIMUM", "MINIMUM"):
            for k, x in enumerate(op.inputs[:2]):
                if x not in requires:
                    continue
                if op.kind == "ADD" and fwd.tensor(x).shape == fwd.tensor(y).shape:
                    add_grad(x, (gy, sy))  # a real-valued add passes the gradient unchanged
                    continue
                # Summed where x is broadcast, negated for SUB's second input, and for
                # MAXIMUM / MINIMUM routed to the input that won (both inputs decide).
                ins = [gy, sy]
                if op.kind in ("MAXIMUM", "MINIMUM"):
                    ins += [op.inputs[k], op.inputs[1 - k]]
                    tb.saved.extend(t for t in op.inputs[:2] if t not in tb.saved)
                gx = new_grad(x)
                emit(f"{op.kind}_GRAD_INPUT", ins, list(gx), forward=f, input=k)
                add_grad(x, gx)
            continue
        if op.kind == "MUL":
            # Each input's gradient is G_y times the other input (summed where broadcast).
            for k, x in enumerate(op.inputs[:2]):
                if x in requires:
                    other = op.inputs[1 - k]
                    if other not in tb.saved:
                        tb.saved.append(other)
                    gx = new_grad(x)
                    emit("MUL_GRAD_INPUT", [gy, sy, other], list(gx), forward=f, input=k)
                    add_grad(x, gx)
            continue
        x = op.inputs[0]
        if x in requires:
            gx = new_grad(x)
            if op.kind == "MAX_POOL_2D":  # where each window's maximum was: the input decides
                ins = [x, gy, sy]
                if x not in tb.saved:
                    tb.saved.append(x)
            elif op.kind in UNARY:  # the derivative at the input the forward saw
                ins = [gy, sy, x]
                if x not in tb.saved:
                    tb.saved.append(x)
            elif op.kind in ("AVERAGE_POOL_2D", "MEAN", "PAD", "RESIZE_NEAREST_NEIGHBOR"):
                ins = [gy, sy]
            else:
                ins = [gy, sy, mask, *op.inputs[1:]]
            emit(f"{op.kind}_GRAD_INPUT", ins, list(gx), forward=f)
        if op.index in updates:
            saved = kept.get(op.index, x) if updates[op.index].weights else -1
            if saved >= 0:
                tb.saved.append(saved)
            u = updates[op.index]
            emit(
                f"{op.kind}_GRAD_UPDATE",
                [saved, gy, sy, mask, *state[op.index], rng],
                [],
                forward=f,
                lr=lr,
                train_rows=u.rows,
                train_cols=u.cols,
                update_bias=u.update_bias,
                qas=scheme.qas,
            )
        if x in requires:
            add_grad(x, gx)
    tb.graph.inputs = [fwd.inputs[0], tb.label]
    tb.graph.outputs = [tb.loss, tb.prediction]
    return tb


def _through_reshapes(g: Graph, t: int) -> int:
    """The tensor RESHAPEs turned into t (t itself if none did)."""
    prod = {o: op for op in g.ops for o in op.outputs}
    while t in prod and prod[t].kind == "RESHAPE":
        t = prod[t].inputs[0]
    return t


def _keep_channels(fwd: Graph, op: Op, cols: int, tensors: list[Tensor], emit: Callable[..., Op]) -> int:
    """The first `cols` channels of a CONV_2D's input, copied (SLICE) just before the layer
    runs: all its input-channel slice's update reads, so the whole input need not outlive the
    forward pass."""
    x = fwd.tensor(op.inputs[0])
    rank = len(x.shape)

    def add(name: str, shape: tuple[int, ...], dtype: str, quant: Any = None, data: Any = None) -> int:
        tensors.append(Tensor(len(tensors), name, shape, dtype, quant, data))
        return len(tensors) - 1

    begin = add(f"{x.name}/keep/begin", (rank,), "int32", data=np.zeros(rank, np.int32))
    size = add(f"{x.name}/keep/size", (rank,), "int32", data=np.array([*x.shape[:-1], cols], np.int32))
    kept = add(f"{x.name}/keep{cols}", (*x.shape[:-1], cols), x.dtype, x.quant)
    emit("SLICE", [x.index, begin, size], [kept])
    return kept


def _state_for(fwd: Graph, op: Op, u: LayerUpdate, tensors: list[Tensor], tb: TrainGraph) -> list[int]:
    """The RAM copies a layer's update writes: its trained weight rows (or input-channel
    columns, [out, kh, kw, cols]) and its bias."""
    out = []
    w = fwd.tensor(op.inputs[1])
    if u.cols:
        data = np.ascontiguousarray(w.data[..., : u.cols])
        tensors.append(Tensor(len(tensors), f"{w.name}/trained", data.shape, "int8", w.quant, data, True))
        out.append(len(tensors) - 1)
        tb.state.append(len(tensors) - 1)
    elif u.rows:
        if op.kind == "DEPTHWISE_CONV_2D":  # compact [kh, kw, rows] copy of the first channels
            data = np.ascontiguousarray(w.data.reshape(w.shape[1], w.shape[2], -1)[:, :, : u.rows])
        else:  # the first rows of [out, ...]: contiguous
            data = np.ascontiguousarray(w.data[: u.rows])
        tensors.append(Tensor(len(tensors), f"{w.name}/trained", data.shape, "int8", w.quant, data, True))
        out.append(len(tensors) - 1)
        tb.state.append(len(tensors) - 1)
    else:
        out.append(-1)
    if u.update_bias:
        b = fwd.tensor(op.inputs[2])
        tensors.append(
            Tensor(len(tensors), f"{b.name}/trained", b.shape, "int32", b.quant, b.data.copy(), True)
        )
        out.append(len(tensors) - 1)
        tb.state.append(len(tensors) - 1)
    else:
        out.append(-1)
    return out
