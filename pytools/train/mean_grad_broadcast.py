"""The gradient of a global average pool kept as one row per image (an exact graph rewrite).

MEAN over the spatial axes of an NHWC tensor (a global average pool) has the input gradient
G_x[b, y, x, c] = G_y[b, c] / (H * W). MEAN_GRAD_INPUT writes it as int8 values G_y[b, c] copied
to every pixel with the scale s_y / (H * W) (firmware/kernels/mean_s8_grad_input.h: no
requantization, so every pixel holds the same int8 value, bit for bit, and there is one scale).
Materialised, that broadcast is batch x H x W x C bytes alive from MEAN_GRAD_INPUT to its last
reader (MobileNetV2-w0.35's 4x4x1280 head: 20,480 B at the backward peak).

Where every reader of that gradient can take it in broadcast form, MEAN_GRAD_INPUT writes
[batch, 1, 1, C] instead (the same int8 values, the same scale; grad_broadcast in its options,
read by its lowering) and the readers get grad_broadcast (their kernels read the image's row at
every output pixel, a pixel stride of 0, and apply their clamp mask per pixel as before). The
readers that take it: the conv input gradient (one pass and two pass: the compiler may switch
it later, the option goes with it) and the conv update (weights and bias). Any other reader
(depthwise or fully connected gradients, GRAD_ADD, a graph output, ...) leaves the graph as it
is, so plans without such a head are unchanged.
"""

from __future__ import annotations

from pytools.model.ir import Graph, Op
from pytools.model.lowering.training import forward_call

# The readers whose kernels take grad_broadcast (their .def), and where they read G_y.
READERS = {"CONV_2D_GRAD_INPUT": 0, "CONV_2D_GRAD_INPUT_2PASS": 0, "CONV_2D_GRAD_UPDATE": 1}


def _spatial_mean(g: Graph, op: Op) -> bool:
    """Whether the MEAN averages exactly the two middle axes of a 4-D input (NHWC)."""
    p = forward_call(g, op).params
    shape = g.tensor(op.outputs[0]).shape
    return len(shape) == 4 and [p.get(f"reduce{k}") for k in range(4)] == [0, 1, 1, 0]


def _takes(g: Graph, reader: Op, t: int) -> bool:
    """Whether reader reads t as its output gradient G_y alone, for an output shaped as t."""
    k = READERS.get(reader.kind)
    if k is None or reader.inputs[k] != t or reader.inputs.count(t) != 1:
        return False
    fwd = g.ops[reader.options["forward"]]
    return g.tensor(fwd.outputs[0]).shape == g.tensor(t).shape


def fold_mean_grad_broadcast(g: Graph) -> list[int]:
    """Rewrites g in place as the module says; returns the MEAN_GRAD_INPUT operators folded."""
    readers: dict[int, list[Op]] = {}
    for op in g.ops:
        for t in set(op.inputs):
            readers.setdefault(t, []).append(op)
    folded = []
    for op in g.ops:
        if op.kind != "MEAN_GRAD_INPUT" or op.options.get("grad_broadcast"):
            continue
        gx = op.outputs[0]
        rs = readers.get(gx, [])
        if gx in g.outputs or not rs or not _spatial_mean(g, op):
            continue
        if not all(_takes(g, r, gx) for r in rs):
            continue
        t = g.tensor(gx)
        b, h, w, c = t.shape
        if h * w == 1:
            continue  # already one row per image
        t.shape = (b, 1, 1, c)
        op.options["grad_broadcast"] = True
        for r in rs:
            r.options["grad_broadcast"] = True
        folded.append(op.index)
    return folded
