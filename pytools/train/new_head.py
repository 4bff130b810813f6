"""A new classifier head (`--new-head N`): the model's output layer replaced by an N-class one.

The new layer has the old one's kind and input (a FULLY_CONNECTED, or a CONV_2D over its
whole input as MCUNet's, found by pytools/train/losses.py), so it is sized from the layer
before it. Initialisation, as Keras' Dense: weights uniform in +-sqrt(6 / (inputs + N))
(Glorot), drawn from `seed`, quantized per output channel (symmetric int8, scale max|w| / 127,
as TFLite's converter does); biases 0 (scale s_in * s_w[c]). The logits' quantization gives
them headroom: scale 32 / 255 and zero point 0, so logits up to +-16 are represented (a
softmax is then within 1e-7 of one-hot; training reads the un-clamped values anyway). The
tensors after it (RESHAPE, SOFTMAX, DEQUANTIZE) take N classes. The scheme trains it like
any layer (its weights are `-1=1`); `export_graph` writes the
trained model as a new flatbuffer (the original's buffers cannot hold another shape).
"""

from __future__ import annotations

import copy

import numpy as np

from pytools.errors import ToolError
from pytools.model.ir import Graph, ModelError, Quant, Tensor
from pytools.train.losses import choose, fc_like, output_layer

LOGIT_RANGE = 16.0  # the new head's logits are represented up to +- this (real units)


def replace_head(graph: Graph, classes: int, seed: int = 0) -> tuple[Graph, str]:
    """A copy of graph with an N-class output layer; and a line saying what changed."""
    if classes < 2:
        raise ModelError(f"--new-head needs at least 2 classes, not {classes}")
    head = choose(graph)
    layer = output_layer(graph, head.output)
    if layer is None or not fc_like(graph, layer):
        raise ModelError(
            "--new-head replaces a FULLY_CONNECTED (or a CONV_2D over its whole input) output layer "
            "without a fused activation; this model's output comes from "
            + (layer.where() if layer is not None else "no operator")
        )
    g = copy.deepcopy(graph)
    op = g.ops[layer.index]
    x, w_old, y = g.tensor(op.inputs[0]), g.tensor(op.inputs[1]), g.tensor(op.outputs[0])
    if x.quant is None:
        raise ModelError(f"{op.where()}: its input '{x.name}' is not quantized")
    depth = int(np.prod(w_old.shape[1:]))
    rng = np.random.default_rng(seed)
    limit = np.sqrt(6.0 / (depth + classes))
    real = rng.uniform(-limit, limit, (classes, depth))
    s_w = (np.abs(real).max(axis=1) / 127.0).astype(np.float32)
    w_q = np.clip(np.round(real / s_w[:, None]), -127, 127).astype(np.int8)
    w_shape = (classes, *w_old.shape[1:])
    s_in = np.float32(x.quant.scale[0])
    zeros = np.zeros(classes, np.int64)
    w = Tensor(
        len(g.tensors), f"{w_old.name}/new_head", w_shape, "int8", Quant(s_w, zeros, 0), w_q.reshape(w_shape)
    )
    b_scale = (s_in.astype(np.float64) * s_w.astype(np.float64)).astype(np.float32)
    b = Tensor(
        len(g.tensors) + 1, f"{w_old.name}/new_head_bias", (classes,), "int32", Quant(b_scale, zeros, 0)
    )
    b.data = np.zeros(classes, np.int32)
    g.tensors += [w, b]
    op.inputs = [op.inputs[0], w.index, b.index]
    out_q = Quant(np.array([2 * LOGIT_RANGE / 255], np.float32), np.zeros(1, np.int64), 0)
    # The layer's output, and every tensor RESHAPE / SOFTMAX / DEQUANTIZE derive from it.
    y.shape, y.quant = (*y.shape[:-1], classes), out_q
    t = y.index
    for later in g.ops[layer.index + 1 :]:
        if t not in later.inputs[:1]:
            continue
        out = g.tensor(later.outputs[0])
        out.shape = (*out.shape[:-1], classes)
        if later.kind == "RESHAPE":
            out.quant = out_q
            later.options["new_shape"] = list(out.shape)
            if len(later.inputs) > 1 and later.inputs[1] >= 0:
                # A new shape tensor: the converter shares equal constants between operators
                # (a 2-class [1, 2] is also a MEAN's axes), so the old one stays as it is.
                old = g.tensor(later.inputs[1])
                shape = np.array(out.shape, np.int32)
                g.tensors.append(
                    Tensor(len(g.tensors), f"{old.name}/new_head", shape.shape, "int32", None, shape)
                )
                later.inputs = [later.inputs[0], len(g.tensors) - 1, *later.inputs[2:]]
        elif later.kind not in ("SOFTMAX", "DEQUANTIZE", "LOGISTIC"):
            raise ModelError(f"{later.where()} follows the output layer; --new-head cannot resize it")
        t = out.index
    old = int(w_old.shape[0])
    return g, (
        f"new head: {op.where()} {old} -> {classes} outputs on {depth} inputs (Glorot-uniform weights, "
        f"seed {seed}; biases 0; logits' scale {float(out_q.scale[0]):.4f}: up to +-{LOGIT_RANGE:g})"
    )


def export_graph(graph: Graph, ct: object, state: dict[int, np.ndarray]) -> bytes:
    """The trained model as a new .tflite: graph (the model with its new head, as compiled
    into ct) with the trained rows and biases of state (pytools/export.read_state) written in."""
    from pytools.export import trained_params
    from pytools.model.tflite_export import write_tflite

    g = copy.deepcopy(graph)
    for p in trained_params(ct):  # type: ignore[arg-type]
        t = g.tensor(p.model_tensor)
        full = np.array(t.data, copy=True)
        p.write_into(full, state[p.state_tensor])
        t.data = full
    try:
        return write_tflite(g)
    except ModelError as e:
        raise ToolError(f"cannot write the model with its new head: {e}") from e
